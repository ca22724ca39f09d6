"""Least-confidence acquisition: label the items whose most probable class is least probable."""

from __future__ import annotations

import numpy as np

from selectkit.selection import Acquisition
from selectkit.selector import Interval, Pool, SelectContext, Selector

_TIES = 0x4C43


class LeastConfidence(Selector):
    """The ``budget`` pool items with the highest score ``1 - max_c p(c | x)``, best first.

    Scores come from the ``probs`` provider (the trained model's class probabilities). Items with
    equal scores are ordered by a random key drawn from ``ctx.rng``, so ties are broken by (seed,
    stage, round) and never by the pool's order.

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size. In a round loop the
            budget is set once, in ``rounds.budget``, and given to this parameter.
    """

    name = "least_confidence"
    requires = frozenset({"probs"})
    returns = Acquisition
    parameter_constraints = {"budget": Interval(1, None, integer=True)}

    def __init__(self, *, budget: int = 10) -> None:
        self.budget = budget

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        n = len(pool)
        if self.budget > n:
            raise self.param_error("budget", f"is {self.budget}, larger than the {n} unlabelled items it chooses from")
        probs = np.asarray(pool.get("probs"), dtype=np.float64)
        scores = 1.0 - probs.max(axis=1)
        key = ctx.rng(_TIES).random(n)
        order = np.lexsort((key, -scores))[: int(self.budget)]
        return Acquisition(order.astype(np.int64), scores[order].astype(np.float32), meta={"budget": int(self.budget), "pool": n})
