"""What every acquisition selector shares: the budget, the stochastic sampling parameters, and the
top-k or sampled choice of the ``budget`` items from per-item scores.

A scored acquisition (least confidence, margin, entropy, BALD) computes one score per pool item, higher
meaning more worth labelling, and hands it to `ScoredAcquisition`, which either takes the top
``budget`` (ties broken by a random key per item, never by pool order) or, with ``stochastic`` set,
samples ``budget`` distinct items with probabilities from the scores (see
`selectkit_plugins.acquisition.stochastic`).

Scored acquisitions are sharded (`selectkit.Selector.sharded`): each rank scores its own shard of the
pool (``pool.local``) and the choice is a global top-``budget`` over the shards (or a Gumbel top-
``budget``), so no rank holds the whole ``probs`` or ``mc_probs``, and the acquired items are the same
at every world size: the tie keys and Gumbel draws are keyed by pool position (``ctx.key``).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Acquisition
from selectkit.selector import AnyOf, Check, Interval, IsNone, OneOf, Pool, SelectContext, Selector

#: salts of the random draws shared by the acquisition selectors
TIES, SAMPLING = 0x4C43, 0x5342
#: how a stochastic acquisition turns scores into sampling probabilities
KINDS = ("power", "softmax", "softrank")

BUDGET = Interval(1, None, integer=True)
STOCHASTIC = AnyOf((IsNone(), OneOf(KINDS)))
TEMPERATURE = Interval(0.0, None, low_closed=False)
NEIGHBORS = AnyOf((IsNone(), Check(lambda v: isinstance(v, Mapping), "a mapping of neighbour-layer settings (neighbors.*)")))
SPACE = OneOf(("embeddings", "features"))


def check_budget(selector: Selector, n: int) -> int:
    """``selector.budget`` as an int; `ConfigError` naming the setting when it exceeds the pool."""
    budget = int(selector.budget)
    if budget > n:
        raise selector.param_error("budget", f"is {budget}, larger than the {n} unlabelled items it chooses from")
    return budget


def tie_key(ctx: SelectContext, n: int, positions: np.ndarray | None = None) -> np.ndarray:
    """One uniform random key per pool item (of ``positions``, default all ``n``), keyed by position
    (``ctx.key``): equal scores are ordered by it, the same way at every world size."""
    from selectkit.distributed import keyed_uniform

    return keyed_uniform(ctx.key(TIES), np.arange(n, dtype=np.int64) if positions is None else positions)


def tie_ids(key: np.ndarray) -> np.ndarray:
    """Random tie keys in ``(0, 1)`` as int64 ids that `selectkit.distributed.global_topk` breaks ties by
    (lowest id first, so highest key first)."""
    return (np.float64(2.0**62) * (1.0 - key)).astype(np.int64)


def neighbor_config(selector: Selector) -> Any:
    """The selector's ``neighbors`` mapping as a `selectkit.neighbors.NeighborConfig` (None: defaults)."""
    from selectkit.neighbors import NeighborConfig

    settings = selector.neighbors
    if settings is None:
        return NeighborConfig()
    fields = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in settings.items() if not str(k).startswith("_")}
    unknown = sorted(set(fields) - set(NeighborConfig.__dataclass_fields__))
    if unknown:
        raise selector.param_error(f"neighbors.{unknown[0]}", f"is not a neighbour setting; known: {', '.join(NeighborConfig.__dataclass_fields__)}")
    try:
        return NeighborConfig(**fields)
    except ConfigError as err:
        raise ConfigError(f"{selector.config_path}.{err}") from None


class ScoredAcquisition(Selector):
    """Base of the acquisitions that score every pool item: top-k, or sampled with ``stochastic``.

    Subclasses set ``name`` and ``requires``, store their own parameters after calling
    ``super().__init__``, and implement `scores`.

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (in a round loop set
            once, in ``rounds.budget``).
        stochastic: ``null`` takes the top ``budget`` scores; ``power``, ``softmax`` or ``softrank``
            samples ``budget`` distinct items with probabilities ``score^(1/T)``, ``exp(score/T)`` or
            ``rank^(-1/T)`` ("Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning").
        temperature: ``T`` of the stochastic sampling, > 0; larger is closer to uniform, smaller
            closer to top-k.
    """

    returns = Acquisition
    sharded = True
    parameter_constraints = {"budget": BUDGET, "stochastic": STOCHASTIC, "temperature": TEMPERATURE}

    def __init__(self, *, budget: int = 10, stochastic: str | None = None, temperature: float = 1.0) -> None:
        self.budget = budget
        self.stochastic = stochastic
        self.temperature = temperature

    def scores(self, pool: Pool, ctx: SelectContext) -> np.ndarray:  # pragma: no cover - interface
        """One float64 score per item of this rank's shard (``pool.local``), higher is more worth labelling."""
        raise NotImplementedError

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        from selectkit_plugins.acquisition.stochastic import choose

        n = len(pool)
        budget = check_budget(self, n)
        scores = np.asarray(self.scores(pool, ctx), dtype=np.float64)
        order, chosen, meta = choose(pool, scores, budget, ctx, self.stochastic, self.temperature, lambda msg: self.param_error("stochastic", msg))
        return Acquisition(order, chosen.astype(np.float32), meta={"budget": budget, "pool": n, **meta})
