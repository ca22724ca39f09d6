"""Selectors for testing `selectkit.worlds.check_selector_worlds` itself (importable by the ranks)."""

import numpy as np

from selectkit.distributed import global_topk
from selectkit.selection import Selection
from selectkit.selector import Selector


class LocalDraws(Selector):
    """Wrong on purpose: draws from a generator walked over the shard's rows, so it depends on the world size."""

    name = "local_draws"
    requires = frozenset({"losses"})
    sharded = True

    def __init__(self, *, budget: int = 5) -> None:
        self.budget = budget

    def _select(self, pool, ctx):
        losses = pool.local("losses").local
        noisy = losses + ctx.rng().random(losses.shape[0])
        top = global_topk(pool.collectives(), noisy, pool.local_positions, self.budget)
        return Selection(np.sort(top.ids))


class TopLoss(Selector):
    """The README's sharded example: the budget items of highest loss."""

    name = "top_loss"
    requires = frozenset({"losses"})
    sharded = True

    def __init__(self, *, budget: int = 5) -> None:
        self.budget = budget

    def _select(self, pool, ctx):
        top = global_topk(pool.collectives(), pool.local("losses").local, pool.local_positions, self.budget)
        return Selection(np.sort(top.ids))
