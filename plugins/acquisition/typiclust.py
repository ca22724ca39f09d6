"""TypiClust acquisition: the most typical item of each of the largest uncovered clusters, for low
budgets ("Active Learning on a Budget: Opposite Strategies Suit High and Low Budgets")."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from selectkit.distributed import Comm, ShardedArray
from selectkit.selection import Acquisition
from selectkit.selector import Interval, Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, NEIGHBORS, SPACE, check_budget, neighbor_config, tie_key
from selectkit_plugins.acquisition.greedy import shard_and_labelled

_KMEANS, _CLUSTERS = 0x544B, 0x5443


def with_labelled(comm: Comm, x: ShardedArray, extra: np.ndarray) -> ShardedArray:
    """The pool's rows followed by ``extra`` ``[m, d]`` (held by every rank) as one sharded array of
    ``n + m`` rows in its own layout (same logical block size): this rank's shard of it, the pool rows
    that change owner sent by one all-to-all (about a block per rank; bytes sent per rank at most its
    shard's)."""
    n, d = x.n, x.local.shape[1]
    target = comm.layout(n + extra.shape[0], x.layout.block_rows)
    lo, hi = x.layout.lo, x.layout.hi
    pieces = []
    for r in range(comm.world):
        start, stop = target.rows_of(r)
        a, b = max(lo, start), min(hi, stop, n)
        pieces.append(np.ascontiguousarray(x.local[a - lo : b - lo] if b > a else np.zeros((0, d), dtype=np.float32), dtype=np.float32))
    got = comm.all_to_all(pieces, "typiclust: rows to the clustering's shards")
    extra_rows = extra[max(target.lo, n) - n : max(target.hi, n) - n]
    return ShardedArray(np.concatenate([g.reshape(-1, d) for g in got] + [extra_rows.astype(np.float32)]), target)


class TypiClust(Selector):
    """Cluster labelled and unlabelled items together into ``|L| + budget`` clusters (at most
    ``max_clusters``) with distributed k-means (`selectkit.distributed.sharded_kmeans`: k-means||
    seeding keyed by ``ctx``, then Lloyd with block-ordered sums); then ``budget`` times take the
    cluster with the fewest labelled or acquired items (the largest first among those, clusters
    smaller than ``min_cluster_size`` only when no other has unlabelled items left) and acquire its
    most typical unlabelled item. Typicality is the inverse mean Euclidean distance to the item's
    ``k_neighbors`` nearest neighbours within its cluster (blocked kNN through the neighbour layer,
    one cluster at a time). Ties are broken by random keys: cluster sizes by one key per cluster
    (``ctx.rng``), typicality by one key per pool position (`tie_key`). Items are listed in pick
    order; ``meta.typicality`` holds each pick's value.

    Sharded: each rank reads its own shard (``pool.local``); the labelled set (``pool.labelled``) is
    held whole by every rank and appended after the pool (`with_labelled`). Which clusters are picked
    from, and how often, follows from the clusters' counts alone, so it is planned first; the members of
    those clusters only then move to the rank that owns their cluster (one all-to-all, clusters
    dealt out largest first to the least loaded rank), which computes their typicality; the
    ``budget`` picks are then gathered. Per rank that is its shard plus the members of its clusters
    (about ``n / W``, or one whole cluster when there are fewer picked clusters than ranks). The
    result is the same at every world size.

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
    sharded = True
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
        from selectkit.distributed import sharded_kmeans

        n = len(pool)
        budget = check_budget(self, n)
        config = neighbor_config(self)
        comm = pool.collectives()
        x, ref = shard_and_labelled(pool, self.space)
        m = ref.shape[0]
        k = int(min(m + budget, int(self.max_clusters), m + n))
        data = with_labelled(comm, x, ref)
        seed = int(ctx.rng(_KMEANS).integers(2**62))
        assign = sharded_kmeans(comm, data, k, n_iter=int(self.n_iter), seed=seed, reduce="block", config=config).assignment
        labelled = data.ids >= n
        counts = comm.all_sum(np.stack([np.bincount(assign, minlength=k), np.bincount(assign[labelled], minlength=k)]))
        sizes, covered = counts[0], counts[1]
        steps, nth = self._plan(sizes, covered, ctx.rng(_CLUSTERS).random(k), budget)
        picked = self._typical_members(comm, data, assign, sizes, np.bincount(steps, minlength=k), n, ctx, config)
        where = np.searchsorted(picked["slot"], steps * budget + nth)
        return Acquisition(
            picked["position"][where],
            meta={"budget": budget, "pool": n, "labelled": m, "clusters": k, "space": self.space, "typicality": picked["typicality"][where].astype(np.float32)},
        )

    def _plan(self, sizes: np.ndarray, covered: np.ndarray, cluster_key: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """The cluster of each of the ``budget`` picks, and how many picks came from that cluster before it.

        Each pick takes the cluster with the fewest labelled or acquired items (largest first, then by
        ``cluster_key``) among those with unlabelled items left (at least ``min_cluster_size`` items
        when any such is left); it depends on the counts alone, not on which item is picked."""
        covered = covered.copy()
        free = sizes - covered
        taken = np.zeros(sizes.shape[0], dtype=np.int64)
        steps = np.empty(budget, dtype=np.int64)
        nth = np.empty(budget, dtype=np.int64)
        for step in range(budget):
            open_ = free > 0
            big = open_ & (sizes >= int(self.min_cluster_size))
            allowed = big if big.any() else open_
            order = np.lexsort((-cluster_key, -sizes, covered))
            c = int(order[allowed[order]][0])
            steps[step], nth[step] = c, taken[c]
            taken[c] += 1
            covered[c] += 1
            free[c] -= 1
        return steps, nth

    def _typical_members(
        self, comm: Comm, data: ShardedArray, assign: np.ndarray, sizes: np.ndarray, picks: np.ndarray, n: int, ctx: SelectContext, config: Any
    ) -> np.ndarray:
        """The ``picks[c]`` most typical unlabelled items of every cluster ``c`` picked from, on every
        rank: records ``(slot = c * budget + rank in c, position, typicality)`` sorted by slot.

        The picked clusters' members move to their cluster's owner (largest cluster first, to the
        least loaded rank), which ranks them by typicality (ties by `tie_key`, highest first)."""
        from selectkit.neighbors import knn

        budget = int(picks.sum())
        owner = np.full(sizes.shape[0], -1, dtype=np.int64)
        load = np.zeros(comm.world, dtype=np.int64)
        chosen = np.flatnonzero(picks)
        for c in chosen[np.lexsort((chosen, -sizes[chosen]))]:
            owner[c] = int(np.argmin(load))
            load[owner[c]] += sizes[c]
        d = data.local.shape[1]
        member = np.dtype([("id", "i8"), ("cluster", "i8"), ("row", "f4", (d,))])
        dest = owner[assign]
        moving = np.flatnonzero(dest >= 0)
        records = np.empty(moving.size, dtype=member)
        records["id"], records["cluster"], records["row"] = data.ids[moving], assign[moving], data.local[moving]
        pieces = [records[dest[moving] == r] for r in range(comm.world)]
        mine = np.concatenate(comm.all_to_all(pieces, "typiclust: members to their cluster's rank"))
        mine = mine[np.lexsort((mine["id"], mine["cluster"]))]
        result = np.dtype([("slot", "i8"), ("position", "i8"), ("typicality", "f8")])
        out = []
        bounds = np.flatnonzero(np.r_[True, mine["cluster"][1:] != mine["cluster"][:-1], True]) if mine.size else np.zeros(1, dtype=np.int64)
        for a, b in zip(bounds[:-1], bounds[1:]):
            group = mine[a:b]
            c = int(group["cluster"][0])
            typ = self._typicality(group["row"], config, knn)
            free = group["id"] < n
            cand, cand_typ = group["id"][free], typ[free]
            best = np.lexsort((-tie_key(ctx, n, cand), -cand_typ))[: picks[c]]
            rec = np.empty(best.size, dtype=result)
            rec["slot"], rec["position"], rec["typicality"] = c * budget + np.arange(best.size), cand[best], cand_typ[best]
            out.append(rec)
        local = np.concatenate(out) if out else np.empty(0, dtype=result)
        every = np.concatenate(comm.all_gather(local, "typiclust: picks"))
        return every[np.argsort(every["slot"])]

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
