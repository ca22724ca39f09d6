"""k-center greedy (core-set) acquisition: each pick is the pool item farthest from everything labelled
or picked so far ("Active Learning for Convolutional Neural Networks: A Core-Set Approach")."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.selection import Acquisition
from selectkit.selector import Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, NEIGHBORS, SPACE, check_budget, neighbor_config, tie_ids, tie_key
from selectkit_plugins.acquisition.greedy import MinDistances, shard_and_labelled


class KCenter(Selector):
    """Greedy k-center: ``budget`` times, acquire the pool item whose distance to its nearest labelled
    or already acquired item is largest, in the model's ``embeddings`` (or raw ``features``).

    Sharded: each rank reads its own shard (``pool.local``) and keeps its rows' distance to the
    nearest centre (`selectkit_plugins.acquisition.greedy.MinDistances`). Distances to the labelled set
    (``pool.labelled``, offered by the round loop, held whole by every rank) come from the neighbour
    layer's blocked exact search; each pick is then a global argmax over the shards whose row is
    sent to every rank, and every rank updates its distances with one ``[n_local, d] x [d]`` pass, so
    no ``N x N`` matrix is built and no rank holds more than its shard. Items at equal distance are
    ordered by a random key per pool position (`selectkit_plugins.acquisition.base.tie_key`), so the
    picks are the same at every world size. Without a labelled set the first pick is random (the
    largest key). Scores are the (Euclidean) distance each pick had when it was chosen, so they
    never increase; the first pick without a labelled set scores as the second.

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (``rounds.budget``).
        space: ``embeddings`` (the trained model's) or ``features`` (raw inputs).
        neighbors: neighbour-layer settings for the labelled-set search (null: exact defaults; the
            search is always exact L2).
    """

    name = "kcenter"
    returns = Acquisition
    sharded = True
    parameter_constraints = {"budget": BUDGET, "space": SPACE, "neighbors": NEIGHBORS}

    def __init__(self, *, budget: int = 10, space: str = "embeddings", neighbors: Mapping[str, Any] | None = None) -> None:
        self.budget = budget
        self.space = space
        self.neighbors = neighbors

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """The provider of ``space``."""
        return frozenset({self.space}) if self.space in ("embeddings", "features") else frozenset({"embeddings"})

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        n = len(pool)
        budget = check_budget(self, n)
        config = neighbor_config(self)
        x, ref = shard_and_labelled(pool, self.space)
        dist = MinDistances(pool.collectives(), x)
        dist.add_reference(ref, config)
        tie = tie_ids(tie_key(ctx, n, dist.positions))
        picks = np.empty(budget, dtype=np.int64)
        scores = np.empty(budget, dtype=np.float64)
        for step in range(budget):
            pick = dist.best(dist.min, tie)
            picks[step], scores[step] = pick.position, pick.value
            dist.add(pick)
            own = dist.local_row(pick.position)
            if own is not None:
                dist.min[own] = -np.inf
        if ref.shape[0] == 0:
            scores[0] = scores[1] if budget > 1 else 0.0
        return Acquisition(picks, np.sqrt(scores).astype(np.float32), meta={"budget": budget, "pool": n, "labelled": int(ref.shape[0]), "space": self.space})
