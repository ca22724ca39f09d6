"""BADGE acquisition: diverse, uncertain items by k-means++ seeding over gradient embeddings
("Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds")."""

from __future__ import annotations

import numpy as np

from selectkit.selection import Acquisition
from selectkit.selector import Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, SAMPLING, check_budget, tie_key
from selectkit_plugins.acquisition.greedy import MinDistances, d2_seeding


class BADGE(Selector):
    """k-means++ seeding over the last layer's gradient embeddings (``grad_embeddings``: the loss
    gradient at the predicted label, whose norm grows with the model's uncertainty).

    The first item is the one with the largest gradient embedding norm, measured on the rows as given
    (the neighbour layer may centre them for its distance passes; distances do not change, norms do;
    ties by a random key from ``ctx.rng``); each further item is drawn with probability proportional to its squared distance to
    the nearest item drawn so far (D² sampling, draws from ``ctx.rng``). Items already drawn (and exact
    duplicates of them) have distance 0, so the batch is distinct; should every remaining item be at
    distance 0, the next is drawn uniformly among them. A running minimum-distance vector is updated
    with one ``[n, d] x [d]`` pass per draw: no ``N x N`` matrix. Items are listed in draw order;
    ``meta.d2`` holds each draw's squared distance (the first: its squared norm).

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (``rounds.budget``).
    """

    name = "badge"
    returns = Acquisition
    requires = frozenset({"grad_embeddings"})
    parameter_constraints = {"budget": BUDGET}

    def __init__(self, *, budget: int = 10) -> None:
        self.budget = budget

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        n = len(pool)
        budget = check_budget(self, n)
        g = np.asarray(pool.get("grad_embeddings"), dtype=np.float32).reshape(n, -1)
        key = tie_key(ctx, n)
        rng = ctx.rng(SAMPLING)
        dist = MinDistances(g)
        ties = np.flatnonzero(dist.norms == dist.norms.max())
        first = int(ties[np.argmax(key[ties])])
        picks, d2 = d2_seeding(dist, budget, rng, first)
        return Acquisition(picks, meta={"budget": budget, "pool": n, "d2": d2.astype(np.float32)})
