"""k-center greedy (core-set) acquisition: each pick is the pool item farthest from everything labelled
or picked so far ("Active Learning for Convolutional Neural Networks: A Core-Set Approach")."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.selection import Acquisition
from selectkit.selector import Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, NEIGHBORS, SPACE, check_budget, neighbor_config, representation, tie_key
from selectkit_plugins.acquisition.greedy import MinDistances


class KCenter(Selector):
    """Greedy k-center: ``budget`` times, acquire the pool item whose distance to its nearest labelled
    or already acquired item is largest, in the model's ``embeddings`` (or raw ``features``).

    Distances to the labelled set (``pool.labelled``, offered by the round loop) come from the
    neighbour layer's blocked exact search; a running minimum-distance vector is then updated with
    one ``[n, d] x [d]`` pass per pick, so no ``N x N`` matrix is built. Items at equal distance are
    ordered by a random key from ``ctx.rng``. Without a labelled set the first pick is random. Scores
    are the (Euclidean) distance each pick had when it was chosen, so they never increase; the first
    pick without a labelled set scores as the second.

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (``rounds.budget``).
        space: ``embeddings`` (the trained model's) or ``features`` (raw inputs).
        neighbors: neighbour-layer settings for the labelled-set search (null: exact defaults; the
            search is always exact L2).
    """

    name = "kcenter"
    returns = Acquisition
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
        x, ref = representation(pool, self.space)
        key = tie_key(ctx, n)
        dist = MinDistances(x)
        dist.add_reference(ref, config)
        picks = np.empty(budget, dtype=np.int64)
        scores = np.empty(budget, dtype=np.float64)
        for step in range(budget):
            best = dist.min.max()
            ties = np.flatnonzero(dist.min == best)
            row = int(ties[np.argmax(key[ties])])
            picks[step], scores[step] = row, best
            dist.add(row)
            dist.min[row] = -np.inf
        if ref.shape[0] == 0:
            scores[0] = scores[1] if budget > 1 else 0.0
        return Acquisition(picks, np.sqrt(scores).astype(np.float32), meta={"budget": budget, "pool": n, "labelled": int(ref.shape[0]), "space": self.space})
