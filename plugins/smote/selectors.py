"""The SMOTE family as selectkit selectors: ``smote``, ``borderline_smote``, ``adasyn``, ``random_over``,
``random_under``.

Over-samplers return every pool position followed by the positions of the synthetic samples they carry
(``len(pool) .. len(pool) + m - 1``); `random_over` repeats pool positions instead, and `random_under`
returns the positions it keeps, ascending.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.distributed import ShardedArray
from selectkit.errors import ConfigError
from selectkit.selection import Selection, Synthetic
from selectkit.selector import Interval, OneOf, Pool, SelectContext, Selector
from selectkit_plugins.smote import core
from selectkit_plugins.smote.sharded import ShardedData
from selectkit.distributed.rows import checked_rows
from selectkit_plugins.smote.strategy import OVER, RULES, UNDER, class_counts, resolve_strategy
from selectkit_plugins.smote.training import EmbeddingInterpolation

_SPACE = OneOf(("input", "embedding"))
#: salt of the keyed draws of classes searched sharded
_KEYED = 0x534B
#: default of ``gather_below``: classes of fewer members are gathered to every rank
GATHER_BELOW = 50_000


def _labels(pool: Pool, names: core.Names) -> np.ndarray:
    y = core.check_labels(pool.labels, len(pool), names)
    if y.dtype.kind not in "iub":
        raise ConfigError(f"data: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _counts_meta(classes: np.ndarray, plan: Mapping[int, int]) -> dict[int, int]:
    return {int(classes[c]): int(n) for c, n in plan.items()}


class _OverSampler(Selector):
    """What the interpolating over-samplers share: parameters, input checks, the `Selection` they build,
    and the training hook that trains on embedding-space samples.

    They are sharded (`selectkit.Selector.sharded`): each rank reads its shard of the features or
    embeddings, and a class that grows is gathered to every rank only when it has fewer than
    ``gather_below`` members; larger classes are searched over their shards with keyed draws
    (`selectkit_plugins.smote.sharded`). The result is the same at every world size.
    """

    creates_samples = True
    default_schedule = "once"
    sharded = True
    method = ""
    parameter_constraints = {
        "sampling_strategy": RULES["sampling_strategy"],
        "k_neighbors": RULES["k_neighbors"],
        "neighbors": RULES["neighbors"],
        "space": _SPACE,
        "gather_below": Interval(0, None, integer=True),
    }

    def __init__(
        self,
        *,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        neighbors: Mapping[str, Any] | None = None,
        space: str = "input",
        gather_below: int = GATHER_BELOW,
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.neighbors = neighbors
        self.space = space
        self.gather_below = gather_below

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"labels", "embeddings" if self.space == "embedding" else "features"})

    def training_hook(self) -> EmbeddingInterpolation | None:
        """Embedding-space samples are re-made from their parents with the current model at every step."""
        return EmbeddingInterpolation() if self.space == "embedding" else None

    def check_model(self, adapter: Any, batch: Mapping[str, Any]) -> None:
        """In embedding space, samples are trained on through the model's map from embeddings to its
        outputs (`selectkit.models.ModelAdapter.output_map`): refuse a model without one before training."""
        if self.space == "embedding":
            adapter.output_map(batch["x"], needed_by=f"{self.config_path}.space=embedding")

    def _data_name(self) -> str:
        return "data: embeddings" if self.space == "embedding" else "data: features"

    def _method(self) -> str:
        return self.method

    def _extra_kwargs(self) -> dict[str, int]:
        return {}

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        base = core.Names(self.config_path, self._data_name())
        y = _labels(pool, base)
        comm = pool.collectives()

        def search_rows(local: np.ndarray, offset: int) -> np.ndarray:
            return core.as_search_matrix(core.check_matrix(local, base, offset)).reshape(local.shape)

        raw = checked_rows(comm, pool.local("embeddings" if self.space == "embedding" else "features"), search_rows, self.config_path)
        shape = raw.local.shape[1:]
        rows = ShardedArray(raw.local.reshape(raw.local.shape[0], int(np.prod(shape, dtype=np.int64))), raw.layout)
        classes, codes, counts = class_counts(y)
        names = core.Names(self.config_path, self._data_name(), classes)
        plan = resolve_strategy(self.sampling_strategy, classes, counts, OVER, names.setting("sampling_strategy"), y)
        config = core.make_config(self.neighbors, names)
        data = ShardedData(
            comm, rows, core.LayerNeighbors(config, names), config, names, gather_below=int(self.gather_below), key=ctx.key(_KEYED),
            memory_cap_gb=pool.memory_cap_gb, who=f"{self.config_path} ({self.name})",
        )
        drawn = core.draw(self._method(), data, codes, plan, ctx.rng(), k=int(self.k_neighbors), names=names, **self._extra_kwargs())
        features = data.interpolate(drawn.parents, drawn.lam)
        if len(shape) != 1:
            features = features.reshape((features.shape[0], *shape))
        n, m = len(pool), drawn.lam.size
        synthetic = Synthetic(
            features=features,
            labels=classes[drawn.codes].astype(np.int64),
            parents=drawn.parents,
            lam=drawn.lam,
            space=self.space,
        )
        created = np.bincount(drawn.codes, minlength=classes.size)
        meta = {
            "created": {int(classes[c]): int(created[c]) for c in range(classes.size) if created[c]},
            "sampling_strategy": _counts_meta(classes, plan),
            "gathered": [int(classes[c]) for c in sorted(plan) if plan[c] > 0 and counts[c] < int(self.gather_below)],
            **drawn.meta,
        }
        return Selection(np.arange(n + m, dtype=np.int64), synthetic=synthetic, meta=meta)


class SMOTESelector(_OverSampler):
    """SMOTE: new minority samples on segments between a sample and one of its ``k`` nearest same-class
    neighbours.

    Args:
        sampling_strategy: which classes to grow and to what size (imbalanced-learn semantics).
        k_neighbors: neighbours each seed may interpolate towards.
        neighbors: `NeighborConfig` fields for the search (backend, metric, nprobe, ...); null: exact.
        space: ``'input'`` interpolates raw features, ``'embedding'`` the model's embeddings.
        gather_below: a grown class of fewer members is gathered to every rank and drawn as in one
            process; a larger one is searched over the ranks' shards with keyed draws (0: never
            gather). Either way the result does not depend on the world size.
    """

    name = "smote"
    method = "smote"


class BorderlineSMOTESelector(_OverSampler):
    """Borderline-SMOTE: only minority samples in danger (at least half, but not all, of their
    ``m_neighbors`` nearest neighbours of another class) seed new samples.

    ``kind='borderline-1'`` interpolates towards the seed's ``k`` nearest same-class neighbours;
    ``'borderline-2'`` towards its ``k`` nearest neighbours of any class, with ``lam`` in ``[0, 0.5)``
    when the neighbour is of another class (the new sample stays nearer the seed).
    A class without any point in danger gets no new samples (reported in ``meta['no_danger']``).
    ``gather_below`` as for `SMOTESelector`.
    """

    name = "borderline_smote"
    parameter_constraints = {
        **_OverSampler.parameter_constraints,
        "m_neighbors": RULES["m_neighbors"],
        "kind": RULES["kind"],
    }

    def __init__(
        self,
        *,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        m_neighbors: int = 10,
        kind: str = "borderline-1",
        neighbors: Mapping[str, Any] | None = None,
        space: str = "input",
        gather_below: int = GATHER_BELOW,
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy, k_neighbors=k_neighbors, neighbors=neighbors, space=space, gather_below=gather_below)
        self.m_neighbors = m_neighbors
        self.kind = kind

    def _method(self) -> str:
        return self.kind

    def _extra_kwargs(self) -> dict[str, int]:
        return {"m": int(self.m_neighbors)}


class ADASYNSelector(_OverSampler):
    """ADASYN: like SMOTE, but each minority sample seeds new samples in proportion to its hardness, the
    share of its ``k_neighbors`` nearest neighbours (any class) that belong to another class.
    ``gather_below`` as for `SMOTESelector`.
    """

    name = "adasyn"
    method = "adasyn"


class _ClassResampler(Selector):
    """What random over- and under-sampling share: the strategy parameter and the per-class plan."""

    default_schedule = "once"
    sharded = True  # labels only, which every rank holds whole
    parameter_constraints = {"sampling_strategy": RULES["sampling_strategy"]}
    requires = frozenset({"labels"})

    def __init__(self, *, sampling_strategy: Any = "auto") -> None:
        self.sampling_strategy = sampling_strategy

    def _plan(self, pool: Pool, direction: Any) -> tuple[np.ndarray, np.ndarray, Mapping[int, int]]:
        """The pool's classes, each position's class code, and the per-class counts to reach."""
        names = core.Names(self.config_path)
        y = _labels(pool, names)
        classes, codes, counts = class_counts(y)
        plan = resolve_strategy(self.sampling_strategy, classes, counts, direction, names.setting("sampling_strategy"), y)
        return classes, codes, plan


class RandomOverSelector(_ClassResampler):
    """Random over-sampling: grows classes by repeating randomly drawn samples of theirs (with
    replacement). Returns pool positions only (repeats, no synthetic samples), so it needs no features.
    """

    name = "random_over"

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        classes, codes, plan = self._plan(pool, OVER)
        extra = core.random_over(codes, plan, ctx.rng())
        indices = np.concatenate([np.arange(len(pool), dtype=np.int64), extra])
        return Selection(indices, meta={"sampling_strategy": _counts_meta(classes, plan), "repeated": int(extra.size)})


class RandomUnderSelector(_ClassResampler):
    """Random under-sampling: shrinks classes to their target size by keeping a random subset of each
    (without replacement). Returns the kept pool positions, ascending.
    """

    name = "random_under"

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        classes, codes, plan = self._plan(pool, UNDER)
        kept = core.random_under(codes, plan, ctx.rng())
        return Selection(kept, meta={"sampling_strategy": _counts_meta(classes, plan), "kept": int(kept.size)})
