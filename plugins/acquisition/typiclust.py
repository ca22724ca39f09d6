"""TypiClust acquisition: the most typical item of each of the largest uncovered clusters, for low
budgets ("Active Learning on a Budget: Opposite Strategies Suit High and Low Budgets")."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.selection import Acquisition
from selectkit.selector import Interval, Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, NEIGHBORS, SPACE, check_budget, neighbor_config, representation, tie_key
from selectkit_plugins.acquisition.greedy import MinDistances, d2_seeding

_KMEANS, _CLUSTERS = 0x544B, 0x5443


class TypiClust(Selector):
    """Cluster labelled and unlabelled items together into ``|L| + budget`` clusters (at most
    ``max_clusters``) with the neighbour layer's k-means (Lloyd from a k-means++ seeding drawn from
    ``ctx.rng``); then ``budget`` times take the cluster with
    the fewest labelled or acquired items (the largest first among those, clusters smaller than
    ``min_cluster_size`` only when no other has unlabelled items left) and acquire its most typical
    unlabelled item. Typicality is the inverse mean Euclidean distance to the item's ``k_neighbors``
    nearest neighbours within its cluster (blocked kNN through the neighbour layer, one cluster at a
    time). Ties (cluster sizes, typicality) are broken by random keys from ``ctx.rng``. Items are listed
    in pick order; ``meta.typicality`` holds each pick's value.

    The representation should not need labels: ``features`` (raw inputs, the default, usable before
    any model is trained, e.g. for the initial set) or ``embeddings`` (the trained model's).

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (``rounds.budget``).
        space: ``features`` or ``embeddings``.
        k_neighbors: neighbours per typicality estimate (fewer in clusters that have fewer points).
        max_clusters: upper bound on the number of clusters.
        min_cluster_size: clusters smaller than this are used only when the others are exhausted.
        n_iter: k-means iterations (Lloyd; stops early when the assignment settles).
        neighbors: neighbour-layer settings for k-means and kNN (null: exact L2 defaults).
    """

    name = "typiclust"
    returns = Acquisition
    parameter_constraints = {
        "budget": BUDGET,
        "space": SPACE,
        "k_neighbors": Interval(1, None, integer=True),
        "max_clusters": Interval(1, None, integer=True),
        "min_cluster_size": Interval(1, None, integer=True),
        "n_iter": Interval(1, None, integer=True),
        "neighbors": NEIGHBORS,
    }

    def __init__(
        self,
        *,
        budget: int = 10,
        space: str = "features",
        k_neighbors: int = 20,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        n_iter: int = 20,
        neighbors: Mapping[str, Any] | None = None,
    ) -> None:
        self.budget = budget
        self.space = space
        self.k_neighbors = k_neighbors
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.n_iter = n_iter
        self.neighbors = neighbors

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """The provider of ``space``."""
        return frozenset({self.space}) if self.space in ("embeddings", "features") else frozenset({"features"})

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        from selectkit.neighbors import kmeans, knn

        n = len(pool)
        budget = check_budget(self, n)
        config = neighbor_config(self)
        x, ref = representation(pool, self.space)
        m = ref.shape[0]
        data = np.concatenate([ref, x]) if m else x
        k = int(min(m + budget, int(self.max_clusters), m + n))
        rng = ctx.rng(_KMEANS)
        start, _ = d2_seeding(MinDistances(data), k, rng, int(rng.integers(data.shape[0])))
        result = kmeans(data, k, n_iter=int(self.n_iter), init=data[start], config=config)
        assign = result.assignment
        sizes = np.bincount(assign, minlength=k)
        covered = np.bincount(assign[:m], minlength=k).astype(np.int64)
        free = np.bincount(assign[m:], minlength=k).astype(np.int64)
        cluster_key = ctx.rng(_CLUSTERS).random(k)
        item_key = tie_key(ctx, n)
        taken = np.zeros(n, dtype=bool)
        typical: dict[int, np.ndarray] = {}
        picks = np.empty(budget, dtype=np.int64)
        values = np.empty(budget, dtype=np.float64)
        for step in range(budget):
            open_ = free > 0
            big = open_ & (sizes >= int(self.min_cluster_size))
            allowed = big if big.any() else open_
            order = np.lexsort((-cluster_key, -sizes, covered))
            c = int(order[allowed[order]][0])
            if c not in typical:
                members = np.flatnonzero(assign == c)
                typical[c] = np.stack([members, self._typicality(data[members], config, knn)])
            members, typ = typical[c][0].astype(np.int64), typical[c][1]
            rows = members - m
            ok = (rows >= 0) & ~taken[np.maximum(rows, 0)]
            cand, cand_typ = rows[ok], typ[ok]
            best = np.flatnonzero(cand_typ == cand_typ.max())
            row = int(cand[best[np.argmax(item_key[cand[best]])]])
            picks[step], values[step] = row, cand_typ.max()
            taken[row] = True
            covered[c] += 1
            free[c] -= 1
        return Acquisition(picks, meta={"budget": budget, "pool": n, "labelled": m, "clusters": k, "space": self.space, "typicality": values.astype(np.float32)})

    def _typicality(self, points: np.ndarray, config: Any, knn: Any) -> np.ndarray:
        """``1 / mean Euclidean distance`` to each point's nearest neighbours among ``points``."""
        count = points.shape[0]
        k = min(int(self.k_neighbors), count - 1)
        if k < 1:
            return np.ones(count)
        from selectkit.neighbors import NeighborConfig

        if config.metric == "cosine":
            points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
        l2 = NeighborConfig(**{**vars(config), "metric": "l2"})
        dist, _ = knn(np.ascontiguousarray(points, dtype=np.float32), k=k, config=l2, exclude_self=True)
        mean = np.sqrt(np.maximum(dist.astype(np.float64), 0.0)).mean(axis=1)
        return 1.0 / (mean + 1e-8)
