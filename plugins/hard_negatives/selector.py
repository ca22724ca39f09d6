"""The ``hard_negatives`` selector: (anchor, positive, hard negatives) tuples mined over the whole pool."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.distributed import Comm, keyed_uniform
from selectkit.errors import ConfigError
from selectkit.sampling import subset_size
from selectkit.selection import Tuples
from selectkit.selector import AnyOf, Boolean, Check, Interval, IsNone, OneOf, Pool, SelectContext, Selector
from selectkit_plugins.hard_negatives.mining import FILTERS, Mined, MiningSettings, check_vectors, mine, neighbor_config, scores_of
from selectkit.distributed.rows import checked_rows, fetch_rows, reshard

_ANCHORS = 0x484E
_POSITIVES = 0x504F
_DRAWS = 0x4452

_OPTIONAL_REAL = AnyOf((IsNone(), Interval()))


def _assembled(comm: Comm, local: Mined) -> Mined:
    """Every rank's `Mined` (each for its own run of the anchors, in rank order) as one, on every rank."""
    k = local.negatives.shape[1]
    rec = np.empty(local.found.size, dtype=[("negatives", "i8", (k,)), ("scores", "f4", (k,)), ("found", "i8"), ("padded", "i8"), ("depth", "i8")])
    for name in rec.dtype.names:
        rec[name] = getattr(local, name)
    every = np.concatenate(comm.all_gather(rec, "hard negatives: mined"))
    totals = comm.all_sum(np.array([local.removed.get(f, 0) for f in FILTERS] + [local.retrieved], dtype=np.int64))
    removed = {f: int(v) for f, v in zip(FILTERS, totals[:-1])}
    return Mined(*(every[name].copy() for name in rec.dtype.names), removed=removed, retrieved=int(totals[-1]), search=local.search)


class HardNegatives(Selector):
    """Offline, corpus-level hard-negative mining; dynamic when its stage runs every n epochs.

    For a ``fraction`` of the anchors (in pool order) it mines ``negatives`` negatives among the
    ``depth`` nearest corpus items in ``space`` (the model's ``embeddings``, raw ``features``, or any
    array the pool offers), through the neighbour layer (``neighbors``, with ``metric``). Positives
    (``positives``): ``pairs`` uses the data's given (anchor, positive) pairs, one tuple per pair, and
    excludes all of an anchor's positives; ``labels`` draws one random same-label item per anchor
    (anchors alone in their class are skipped and counted); ``auto`` takes pairs when the data has
    them, labels otherwise. With labels, ``exclude_same_label`` also excludes every item of the
    anchor's label. The corpus (``corpus``): ``all`` pool items, the items that are some pair's
    ``positives``, or ``auto``: with pairs every item that is no pair's anchor (the documents, not
    the queries), with labels every item.

    Over several ranks (``sharded``): each rank reads its shard of ``space``; the corpus's rows are cut
    in the pool's logical blocks over the ranks, every rank mines for the anchors of its own shard
    through `selectkit.distributed.sharded_knn` (each rank searches its corpus shard, the candidates
    are merged by (score, id)), the positives' vectors come from their ranks, and the mined tuples
    are gathered in anchor order, the same on every rank and at every world size. Only labels and
    pairs are whole. The anchor subset and the label positives are keyed by pool position
    (``ctx.key``), the random choices among candidates by (anchor, candidate).

    Filters, in order (`selectkit_plugins.hard_negatives.mining`): the margins to the positive's
    score (``absolute_margin``, ``relative_margin``), the false-negative guard
    (``false_negative_ratio``: drop candidates scoring above that multiple of the positive's score),
    ``max_score`` / ``min_score``, then the rank window ``[rank_min, rank_max)`` among the survivors.
    ``sampling``: ``top`` takes the best, ``random`` draws uniformly among the survivors. Anchors with
    too few survivors are searched again at twice the depth up to ``max_depth``; anchors still short
    follow ``on_short``: ``error`` (one line saying how many were found), ``skip`` (counted in
    ``meta``), or ``pad`` (random non-excluded corpus items, counted).

    ``meta`` holds the table of what was mined and filtered: retrieved candidates, removals per
    filter, short, skipped and padded anchors, depths, score means, how the search ran (``search``:
    corpus size, backend, the ranks and the sharded searches), and (from the second mining on)
    the share of anchors whose negatives changed since the previous mining. The latest mined tuples
    (global ids: anchors, positives, negatives) and their epoch are the selector's state, so they
    travel in checkpoints.

    With ``remine_every_steps`` set (``space: embeddings`` only), the negatives are also re-mined
    during training: a `selectkit_plugins.hard_negatives.remine.StepRemining` hook re-embeds the
    corpus with the current network at the first training step of every epoch and then every
    ``remine_every_steps`` steps of the epoch, and swaps every batch's negatives for ones mined
    against that snapshot with the same `mine` call and settings; the anchors and positives of the
    epoch's selection stay. The mining plan (anchors, their positives, the corpus and the labels
    excluded, in global ids) is then part of the selector's state too.

    Args:
        negatives: negatives per tuple, ``>= 1``.
        space: provider whose vectors are searched (``embeddings``, ``features``, ...).
        metric: ``cosine`` | ``ip`` | ``l2`` (score ``-|a - b|^2``); overrides ``neighbors.metric``.
        positives: ``auto`` | ``pairs`` | ``labels``.
        exclude_same_label: exclude items of the anchor's label, when the data has labels.
        corpus: ``auto`` | ``all`` | ``positives``.
        fraction: share of the anchors mined for, in (0, 1] (a random subset, keyed by position).
        depth: candidates retrieved per anchor at first.
        max_depth: deepest search for anchors left short (``depth`` disables widening).
        rank_min, rank_max: the rank window among surviving candidates (``rank_max`` null: no bound).
        absolute_margin, relative_margin, false_negative_ratio, max_score, min_score: score filters
            (null: off).
        sampling: ``top`` | ``random``.
        on_short: ``error`` | ``skip`` | ``pad``.
        neighbors: `selectkit.neighbors.NeighborConfig` fields (null: the run's shared settings).
        remine_every_steps: re-embed and re-mine every n training steps within an epoch (and at its
            first step), ``>= 1``; null: the negatives of the stage's selection are trained on as
            they are.
    """

    name = "hard_negatives"
    returns = Tuples
    default_schedule = "once"
    sharded = True
    parameter_constraints = {
        "negatives": Interval(1, None, integer=True),
        "space": Check(lambda v: isinstance(v, str) and bool(v), "a provider name such as embeddings or features"),
        "metric": OneOf(("cosine", "ip", "l2")),
        "positives": OneOf(("auto", "pairs", "labels")),
        "exclude_same_label": Boolean(),
        "corpus": OneOf(("auto", "all", "positives")),
        "fraction": Interval(0.0, 1.0, low_closed=False),
        "depth": Interval(1, None, integer=True),
        "max_depth": Interval(1, None, integer=True),
        "rank_min": Interval(0, None, integer=True),
        "rank_max": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "absolute_margin": _OPTIONAL_REAL,
        "relative_margin": AnyOf((IsNone(), Interval(0.0, 1.0))),
        "false_negative_ratio": AnyOf((IsNone(), Interval(0.0, None, low_closed=False))),
        "max_score": _OPTIONAL_REAL,
        "min_score": _OPTIONAL_REAL,
        "sampling": OneOf(("top", "random")),
        "on_short": OneOf(("error", "skip", "pad")),
        "remine_every_steps": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "neighbors": Check(lambda v: v is None or hasattr(v, "items") or type(v).__name__ == "NeighborConfig", "null or a mapping of NeighborConfig fields"),
    }

    def __init__(
        self,
        *,
        negatives: int = 3,
        space: str = "embeddings",
        metric: str = "cosine",
        positives: str = "auto",
        exclude_same_label: bool = True,
        corpus: str = "auto",
        fraction: float = 1.0,
        depth: int = 64,
        max_depth: int = 1024,
        rank_min: int = 0,
        rank_max: int | None = None,
        absolute_margin: float | None = None,
        relative_margin: float | None = None,
        false_negative_ratio: float | None = None,
        max_score: float | None = None,
        min_score: float | None = None,
        sampling: str = "top",
        on_short: str = "skip",
        neighbors: Any = None,
        remine_every_steps: int | None = None,
    ) -> None:
        self.negatives = negatives
        self.space = space
        self.metric = metric
        self.positives = positives
        self.exclude_same_label = exclude_same_label
        self.corpus = corpus
        self.fraction = fraction
        self.depth = depth
        self.max_depth = max_depth
        self.rank_min = rank_min
        self.rank_max = rank_max
        self.absolute_margin = absolute_margin
        self.relative_margin = relative_margin
        self.false_negative_ratio = false_negative_ratio
        self.max_score = max_score
        self.min_score = min_score
        self.sampling = sampling
        self.on_short = on_short
        self.neighbors = neighbors
        self.remine_every_steps = remine_every_steps
        self._previous: dict[str, Any] = {}
        self._plan: dict[str, Any] = {}

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """The vectors' provider, plus ``pairs`` or ``labels`` when ``positives`` names one."""
        need = {self.space if isinstance(self.space, str) else "embeddings"}
        if self.positives in ("pairs", "labels"):
            need.add(self.positives)
        return frozenset(need)

    def _check_params_jointly(self) -> None:
        if self.rank_max is not None and self.rank_max - self.rank_min < self.negatives:
            raise self._error("rank_max", f"={self.rank_max} leaves {self.rank_max - self.rank_min} ranks after rank_min={self.rank_min}, fewer than negatives={self.negatives}")
        if self.max_score is not None and self.min_score is not None and self.min_score > self.max_score:
            raise self._error("min_score", f"={self.min_score} exceeds max_score={self.max_score}, which excludes every candidate")
        if self.corpus == "positives" and self.positives == "labels":
            raise self._error("corpus", "=positives needs positives=pairs (or auto on data with pairs)")
        neighbor_config(self.neighbors, self.metric, self.config_path)
        if self.remine_every_steps is not None and self.space != "embeddings":
            raise self._error("remine_every_steps", f"={self.remine_every_steps} re-embeds the corpus with the network being trained: it needs space=embeddings, not {self.space!r}")

    def _error(self, key: str, message: str) -> ConfigError:
        """A `ConfigError` reading ``<path>.<key><message>`` (the message starts with ``=value`` or ``:``)."""
        return ConfigError(f"{self.config_path}.{key}{message}")

    def settings(self) -> MiningSettings:
        """The mining settings these parameters stand for."""
        return MiningSettings(
            negatives=int(self.negatives), depth=int(self.depth), max_depth=int(self.max_depth), rank_min=int(self.rank_min),
            rank_max=None if self.rank_max is None else int(self.rank_max), absolute_margin=self.absolute_margin,
            relative_margin=self.relative_margin, false_negative_ratio=self.false_negative_ratio, max_score=self.max_score,
            min_score=self.min_score, sampling=self.sampling, on_short=self.on_short, exclude_same_label=bool(self.exclude_same_label),
        )

    # ------------------------------------------------------------------ selection
    def _select(self, pool: Pool, ctx: SelectContext) -> Tuples:
        n = len(pool)
        mode = self.positives
        if mode == "auto":
            mode = "pairs" if pool.has("pairs") else "labels" if pool.has("labels") else None
            if mode is None:
                raise self._error("positives", "=auto: this pool offers neither 'pairs' nor 'labels', so no anchor has a positive")
        labels = self._labels(pool, mode)
        comm = pool.collectives()
        setting = f"{self.config_path}.space"
        vectors = checked_rows(comm, pool.local(self.space), lambda x, offset: check_vectors(x, f"{self.space!r} vectors", setting, offset), setting)
        meta: dict[str, Any] = {"positives": mode, "space": self.space, "metric": self.metric, "same_label_excluded": labels is not None and bool(self.exclude_same_label)}
        if mode == "pairs":
            anchors, ptr, pos_items, corpus_items = self._pairs(pool, ctx, meta)
        else:
            anchors, ptr, pos_items, corpus_items = self._labelled(labels, ctx, meta)
        k = int(self.negatives)
        if anchors.size == 0:
            raise self._error("positives", f"={mode}: no anchor has a positive in this pool of {n} items")
        if corpus_items.size == 0:
            raise self._error("corpus", f"={self.corpus}: no item of this pool of {n} is in the corpus (every item anchors a pair); set corpus to all")
        config = neighbor_config(self.neighbors, self.metric, self.config_path)
        same = labels is not None and self.exclude_same_label
        if self.remine_every_steps is not None:
            self._plan = self._mining_plan(pool, anchors, ptr, pos_items, corpus_items, labels if same else None, ctx)
        # this rank mines for the anchors of its shard; the positives' vectors come from their ranks
        lo, hi = vectors.layout.lo, vectors.layout.hi
        a0, a1 = (int(i) for i in np.searchsorted(anchors, [lo, hi]))
        mine_ptr = ptr[a0 : a1 + 1] - ptr[a0]
        mine_pos = pos_items[ptr[a0] : ptr[a1]]
        owners = np.repeat(np.arange(a1 - a0), np.diff(mine_ptr))
        anchor_vectors = vectors.local[anchors[a0:a1] - lo]
        pos_scores = scores_of(self.metric, anchor_vectors[owners], fetch_rows(comm, vectors, mine_pos, "hard negatives: positives"))
        # margins refer to each anchor's lowest positive score
        reference = np.minimum.reduceat(pos_scores, mine_ptr[:-1]) if pos_scores.size else np.zeros(0, np.float32)
        corpus_comm, corpus = reshard(comm, vectors, corpus_items, "hard negatives: corpus")
        local = mine(
            anchor_vectors, corpus, anchor_items=anchors[a0:a1], corpus_items=corpus_items, reference=reference,
            positive_keys=np.unique(owners.astype(np.int64) * n + mine_pos), n_items=n, settings=self.settings(),
            seed=int(ctx.rng(_DRAWS).integers(2**62)), config=config, anchor_labels=labels[anchors[a0:a1]] if same else None,
            corpus_labels=labels[corpus_items] if same else None, setting=self.config_path, comm=corpus_comm, row_offset=a0,
        )
        result = _assembled(comm, local)
        pos_scores = np.concatenate(comm.all_gather(pos_scores.astype(np.float32), "hard negatives: positive scores"))
        short = result.short
        if short.any() and self.on_short == "error":
            first = int(np.flatnonzero(short)[0])
            raise self._error(
                "on_short",
                f"=error: {int(short.sum())} of {anchors.size} anchors kept fewer than negatives={k} candidates after the filters "
                f"(fewest {int(result.found.min())}; anchor {int(pool.ids[anchors[first]])} found {int(result.found[first])} at depth "
                f"{int(result.depth[first])}); relax the filters, raise max_depth, or set on_short to skip or pad",
            )
        keep = ~short if self.on_short == "skip" else np.ones(anchors.size, dtype=bool)
        if not keep.any():
            worst = max((f for f in FILTERS if f not in ("self",)), key=lambda f: result.removed.get(f, 0))
            raise self._error(
                "on_short",
                f"={self.on_short}: no anchor kept {k} negatives after the filters (the filter removing most: {worst}, "
                f"{result.removed.get(worst, 0)} of {result.retrieved} candidates); relax the filters or raise max_depth",
            )
        counts = np.diff(ptr)
        tuple_rows = np.repeat(np.arange(anchors.size), counts)
        kept_rows = keep[tuple_rows]
        t_anchor = anchors[tuple_rows][kept_rows]
        t_pos = pos_items[kept_rows]
        t_neg = result.negatives[tuple_rows][kept_rows]
        t_pos_scores = pos_scores[kept_rows].astype(np.float32)
        t_neg_scores = result.scores[tuple_rows][kept_rows].astype(np.float32)
        meta.update(self._table(result, anchors, keep, counts, t_pos_scores, t_neg_scores, len(corpus_items)))
        meta.update(self._refresh(pool.ids[t_anchor], pool.ids[t_pos], pool.ids[t_neg], ctx))
        return Tuples(t_anchor.astype(np.int64), t_pos.astype(np.int64), t_neg.astype(np.int64), t_pos_scores, t_neg_scores, meta=meta)

    def _mining_plan(self, pool, anchors, ptr, pos_items, corpus_items, labels, ctx: SelectContext) -> dict[str, Any]:
        """What step re-mining needs, in global ids: anchors with the CSR of their positives, the corpus,
        and (when same-label items are excluded) the labels of both."""
        ids = np.asarray(pool.ids, dtype=np.int64)
        none = np.zeros(0, dtype=np.int64)
        return {
            "anchors": ids[anchors], "ptr": np.asarray(ptr, dtype=np.int64), "positives": ids[pos_items], "corpus": ids[corpus_items],
            "same_label": np.asarray(labels is not None, dtype=np.int64),
            "anchor_labels": none if labels is None else np.asarray(labels[anchors], dtype=np.int64),
            "corpus_labels": none if labels is None else np.asarray(labels[corpus_items], dtype=np.int64),
            "epoch": np.asarray(ctx.epoch, dtype=np.int64),
        }

    @property
    def plan(self) -> dict[str, Any]:
        """The latest mining plan (see `_mining_plan`); empty unless ``remine_every_steps`` is set."""
        return self._plan

    def training_hook(self) -> Any:
        """A `StepRemining` hook when ``remine_every_steps`` is set, else None."""
        if self.remine_every_steps is None:
            return None
        from selectkit_plugins.hard_negatives.remine import StepRemining

        return StepRemining(self)

    def _labels(self, pool: Pool, mode: str) -> np.ndarray | None:
        """The pool's labels where this mining uses them: always with label positives; with pairs only
        for ``exclude_same_label``, and only when every item has one."""
        if mode == "labels":
            return pool.labels
        if not (self.exclude_same_label and pool.has("labels")):
            return None
        try:
            return pool.labels
        except ConfigError:
            return None

    def _subset(self, ctx: SelectContext, candidates: np.ndarray) -> np.ndarray:
        """A ``fraction`` of the sorted pool positions ``candidates``, sorted: those with the smallest
        keyed numbers (``ctx.key``, by position), so the anchors are the same at every world size."""
        size = subset_size(candidates.size, self.fraction)
        if size >= candidates.size:
            return candidates
        u = keyed_uniform(ctx.key(_ANCHORS), candidates)
        return np.sort(candidates[np.lexsort((candidates, u))[:size]])

    def _pairs(self, pool: Pool, ctx: SelectContext, meta: dict[str, Any]):
        """Anchors (sorted), CSR of their positives, and the corpus, from the pool's pairs."""
        n = len(pool)
        pairs = np.asarray(pool.get("pairs"), dtype=np.int64).reshape(-1, 2)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        pairs = np.unique(pairs, axis=0)
        every = np.unique(pairs[:, 0])
        anchors = self._subset(ctx, every)
        chosen = pairs[np.isin(pairs[:, 0], anchors)]
        ptr = np.concatenate([[0], np.cumsum(np.bincount(np.searchsorted(anchors, chosen[:, 0]), minlength=anchors.size))])
        if self.corpus == "all":
            corpus_items = np.arange(n, dtype=np.int64)
        elif self.corpus == "positives":
            corpus_items = np.unique(pairs[:, 1])
        else:
            corpus_items = np.setdiff1d(np.arange(n, dtype=np.int64), every, assume_unique=True)
        meta.update({"pairs": int(pairs.shape[0]), "anchors_with_pairs": int(every.size)})
        return anchors, ptr.astype(np.int64), chosen[:, 1].copy(), corpus_items

    def _labelled(self, labels: np.ndarray | None, ctx: SelectContext, meta: dict[str, Any]):
        """Anchors (sorted), one random same-label positive each (keyed by the anchor's position), and
        the corpus (every item)."""
        if labels is None:
            raise self._error("positives", "=labels: this pool has no labels")
        n = labels.shape[0]
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        drawn = self._subset(ctx, np.arange(n, dtype=np.int64))
        alone = counts[inverse[drawn]] < 2
        anchors = drawn[~alone].astype(np.int64)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[inverse[order]]
        c = inverse[anchors]
        u = (keyed_uniform(ctx.key(_POSITIVES), anchors) * (counts[c] - 1)).astype(np.int64)
        positives = order[starts[c] + u + (u >= rank[anchors])].astype(np.int64)
        meta.update({"anchors_drawn": int(drawn.size), "skipped_no_positive": int(alone.sum())})
        return anchors, np.arange(anchors.size + 1, dtype=np.int64), positives, np.arange(n, dtype=np.int64)

    def _table(self, result, anchors, keep, counts, pos_scores, neg_scores, corpus_size) -> dict[str, Any]:
        """What was mined and what was filtered, for the manifest."""
        k = int(self.negatives)
        live = np.isfinite(neg_scores)
        return {
            "anchors": int(anchors.size),
            "tuples": int(pos_scores.size),
            "negatives": k,
            "corpus": int(corpus_size),
            "retrieved": int(result.retrieved),
            "search": result.search,
            "removed": {f: int(result.removed.get(f, 0)) for f in FILTERS},
            "short": int(result.short.sum()),
            "skipped_short": int((~keep).sum()),
            "found_min": int(result.found.min()) if result.found.size else 0,
            "padded": int(result.padded.sum()),
            "widened": int((result.depth > min(int(self.depth), corpus_size)).sum()),
            "depth_max": int(result.depth.max()) if result.depth.size else 0,
            "positive_score_mean": float(pos_scores.mean()) if pos_scores.size else None,
            "negative_score_mean": float(neg_scores[live].mean()) if live.any() else None,
        }

    def _refresh(self, anchor_ids: np.ndarray, positive_ids: np.ndarray, negative_ids: np.ndarray, ctx: SelectContext) -> dict[str, Any]:
        """The share of anchors whose negatives changed since the previous mining; keeps this one."""
        out: dict[str, Any] = {"mined_epoch": int(ctx.epoch)}
        prev = self._previous
        if prev:
            pa, first = np.unique(prev["anchors"], return_index=True)
            ua, ufirst = np.unique(anchor_ids, return_index=True)
            both, i_prev, i_now = np.intersect1d(pa, ua, return_indices=True)
            if both.size:
                old = np.sort(prev["negatives"][first[i_prev]], axis=1)
                new = np.sort(negative_ids[ufirst[i_now]], axis=1)
                out["changed_since_previous"] = round(float((old != new).any(axis=1).mean()), 6)
                out["previous_epoch"] = int(prev["epoch"])
        self._previous = {"anchors": anchor_ids.astype(np.int64), "positives": positive_ids.astype(np.int64), "negatives": negative_ids.astype(np.int64), "epoch": int(ctx.epoch)}
        return out

    # ------------------------------------------------------------------ state
    def _extra_state(self) -> dict[str, Any]:
        state = dict(self._previous)
        if self._plan:
            state["plan"] = dict(self._plan)
        return state

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        state = dict(state)
        self._plan = {k: np.asarray(v, dtype=np.int64) for k, v in dict(state.pop("plan", {}) or {}).items()}
        self._previous = {k: (np.asarray(v, dtype=np.int64) if k != "epoch" else int(v)) for k, v in state.items()}
