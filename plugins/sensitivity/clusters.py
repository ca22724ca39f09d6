"""Clusters of a sharded pool for sensitivity sampling: k-means per group of items, and per-cluster minima.

`cluster_groups` runs `selectkit.distributed.sharded_kmeans` (k-means|| seeding, Lloyd's sums along the
block tree) on each group of items (one class each with ``by_label``, else the whole pool) over the
shards' own members of the group. A group is laid out as a pool of its own (`MemberLayout`): its
members in pool order, cut where the pool's logical blocks are cut, every rank owning the members of
its own blocks. So the reductions over a group follow one fixed tree over its blocks, and the clusters
are the same at every world size. With ``cap`` the k-means trains on the ``k * cap`` members of the
smallest keyed uniforms (global top-k) and every member is then assigned to the nearest final centre.

`cluster_minimum` finds, for every cluster, the member with the smallest score over all ranks (ties by
pool position): the representatives (nearest the centre) and the probes (the smallest keyed uniform).
Memory per rank: the shard's rows of one group and ``O(k)`` per cluster; bytes sent per group are those
of `selectkit.distributed.sharded_kmeans` plus one all-gather of the blocks' member counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from selectkit.distributed import Comm, ShardedArray, ShardLayout, global_topk, keyed_uniform, sharded_kmeans, subkey
from selectkit.distributed.keyed import Key

_NONE = np.iinfo(np.int64).max


@dataclass(frozen=True)
class MemberLayout(ShardLayout):
    """A subset of a sharded pool laid out as a pool of its own (see the module docstring).

    Its blocks are the pool's logical blocks that hold members (a block without members is left out,
    so no block is empty), each the members of that pool block in pool order; rank ``r`` owns the
    blocks cut from its own pool blocks. ``bounds`` (``[n_blocks + 1]``) are the blocks' first members,
    ``firsts`` (``[world + 1]``) each rank's first block. Nothing here depends on the world size but
    which rank owns which block.
    """

    bounds: np.ndarray = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    firsts: np.ndarray = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """A subset may hold fewer members than there are ranks: no world check."""

    @property
    def n_blocks(self) -> int:
        """Blocks holding members."""
        return int(self.bounds.shape[0] - 1)

    def blocks_of(self, rank: int) -> range:
        """The member blocks cut from rank ``rank``'s pool blocks."""
        return range(int(self.firsts[rank]), int(self.firsts[rank + 1]))

    def rows_of(self, rank: int) -> tuple[int, int]:
        """``(lo, hi)``: the members rank ``rank`` owns (member order)."""
        blocks = self.blocks_of(rank)
        return int(self.bounds[blocks.start]), int(self.bounds[blocks.stop])

    def block_bounds(self, block: int) -> tuple[int, int]:
        """``(lo, hi)``: the members of block ``block``."""
        return int(self.bounds[block]), int(self.bounds[block + 1])

    def owner(self, ids: np.ndarray) -> np.ndarray:
        """The rank owning each member (by member index)."""
        block = np.searchsorted(self.bounds, np.asarray(ids, dtype=np.int64), side="right") - 1
        return (np.searchsorted(self.firsts, block, side="right") - 1).astype(np.int64)


def member_layout(comm: Comm, layout: ShardLayout, mask: np.ndarray) -> MemberLayout:
    """The `MemberLayout` of the shard rows where ``mask`` holds (one all-gather of per-block counts)."""
    counts = np.array([int(np.count_nonzero(mask[rows])) for _, rows in layout.local_blocks()], dtype=np.int64)
    per_rank = comm.all_gather(counts, "sensitivity: group sizes")
    kept = [c[c > 0] for c in per_rank]
    firsts = np.concatenate([[0], np.cumsum([c.size for c in kept])]).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(np.concatenate(kept))]).astype(np.int64)
    return MemberLayout(int(bounds[-1]), layout.world, layout.rank, layout.block_rows, bounds=bounds, firsts=firsts)


def pool_sum(comm: Comm, layout: ShardLayout, values: np.ndarray) -> float:
    """The float64 sum over the pool (or a `MemberLayout`'s members) of a per-row array, block by block
    along the fixed tree: the same at every world size."""
    values = np.asarray(values, dtype=np.float64)
    parts = np.array([values[rows].sum() for _, rows in layout.local_blocks()])
    return float(comm.block_sum(parts, layout))


class Clusters(NamedTuple):
    """What `cluster_groups` returns: each local row's cluster (``0..k_used-1``, group by group) and its
    squared distance to the centre (float32), ``k_used``, the inertia and the most Lloyd iterations."""

    assignment: np.ndarray
    distances: np.ndarray
    k_used: int
    inertia: float
    iters: int


def _nearest(points: np.ndarray, mask: np.ndarray, layout: ShardLayout, centroids: np.ndarray, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """The nearest of ``centroids`` (and the squared distance) for the masked local rows, searched one
    pool block at a time (exact search; unit vectors for 'cosine', as `sharded_kmeans` assigns)."""
    from selectkit.neighbors import NeighborConfig, NeighborIndex
    from selectkit.neighbors.config import resolve
    from selectkit.neighbors.inputs import normalized

    config = resolve(config)
    index = NeighborIndex(n_neighbors=1, config=NeighborConfig(**{**vars(config), "backend": "flat", "metric": "l2"})).fit(centroids)
    labels, dist = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for _, rows in layout.local_blocks():
        x = points[rows][mask[rows]]
        if x.shape[0]:
            d, i = index.search(normalized(x) if config.metric == "cosine" else x, 1)
            labels.append(i[:, 0].astype(np.int64))
            dist.append(d[:, 0].astype(np.float32))
    return np.concatenate(labels), np.concatenate(dist)


def cluster_groups(
    comm: Comm,
    points: ShardedArray,
    group: np.ndarray,
    quota: np.ndarray,
    seeds: list[int],
    *,
    n_iter: int,
    config: Any,
    cap: int | None,
    key: Key,
) -> Clusters:
    """k-means into ``quota[g]`` clusters within each group ``g`` of the local rows (``group``: each
    row's group); ``seeds[g]`` seeds its k-means||, ``key`` the training sample drawn when a group holds
    more than ``quota[g] * cap`` members. Every rank must call it with the same quota and seeds."""
    layout = points.layout
    positions = points.ids
    assignment = np.empty(layout.n_local, dtype=np.int64)
    distances = np.empty(layout.n_local, dtype=np.float32)
    offset, inertia, iters = 0, 0.0, 0
    for g, k_g in enumerate(int(q) for q in quota):
        mask = group == g
        members = member_layout(comm, layout, mask)
        train, train_layout = mask, members
        if cap is not None and members.n > k_g * cap:
            ids = positions[mask]
            top = global_topk(comm, keyed_uniform(subkey(key, g), ids), ids, k_g * cap, largest=False)
            train = mask & np.isin(positions, top.ids)
            train_layout = member_layout(comm, layout, train)
        rows = points.local if train.all() else points.local[train]
        km = sharded_kmeans(comm, ShardedArray(rows, train_layout), k_g, n_iter=n_iter, seed=int(seeds[g]), reduce="block", config=config)
        if train is mask:
            labels, dist, total = km.assignment, km.distances, km.inertia
        else:
            labels, dist = _nearest(points.local, mask, layout, km.centroids, config)
            total = pool_sum(comm, members, dist)
        assignment[mask] = offset + labels
        distances[mask] = dist
        offset += k_g
        inertia += float(total)
        iters = max(iters, int(km.n_iter))
    return Clusters(assignment, distances, offset, inertia, iters)


def cluster_minimum(
    comm: Comm, cluster: np.ndarray, score: np.ndarray, positions: np.ndarray, k: int, value: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each cluster ``0..k-1``, over every rank: the pool position of the member with the smallest
    ``score`` (ties by lowest position; -1 for a cluster without members) and its ``value``. One
    all-gather of ``k`` records per rank."""
    rec = np.empty(k, dtype=[("score", "f8"), ("pos", "i8"), ("value", "f8")])
    rec["score"], rec["pos"], rec["value"] = np.inf, _NONE, np.nan
    if cluster.size:
        order = np.lexsort((positions, score, cluster))
        sorted_clusters = cluster[order]
        head = order[np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]]]
        rec["score"][cluster[head]] = score[head]
        rec["pos"][cluster[head]] = positions[head]
        rec["value"][cluster[head]] = value[head]
    every = np.stack(comm.all_gather(rec, "sensitivity: cluster minima"))
    best = every[np.lexsort((every["pos"], every["score"]), axis=0)[0], np.arange(k)]
    return np.where(best["pos"] == _NONE, -1, best["pos"]), best["value"]
