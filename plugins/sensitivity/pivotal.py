"""Pivotal sampling along a global order of a sharded pool's items, the same sample at every world size.

Pivotal sampling (see `selectkit.sampling`) resolves a binary tree over the items bottom-up by duels,
keeping every item's inclusion probability ``pi`` and a fixed sample size ``sum(pi)``. Here the leaves
are the items with ``0 < pi < 1`` sorted by a key ``(cluster, distance, pool position)``, and the tree
splits every run of ``s`` leaves into its first ``s // 2`` and last ``s - s // 2``: ``sensitivity``
orders its items cluster by cluster, nearest the centre first, so a sample spreads over the clusters
and the distances as a stratified sample would.

Over several ranks:

1. **Sort.** The open items (with their ``pi``) are sorted globally by a sample sort: each rank sorts
   its own, ``4 W`` regular samples per rank are gathered, ``W - 1`` splitters cut the key range, and
   one all-to-all sends every item to the rank of its range, where the runs are merged. Rank ``r``
   then holds the leaves ``[a_r, b_r)`` of the global order (regular sampling keeps it below about
   ``2 n / W`` items).
2. **Local subtrees.** The largest tree nodes inside ``[a_r, b_r)`` (at most two per tree level) are
   resolved on the rank, level by level over all of them at once.
3. **The nodes above**, ``O(W log n)`` of them, are resolved on every rank from the gathered outputs
   of those nodes (each a survivor, its ``pi`` and its residual probability).

A duel's uniform is keyed by its node (`selectkit.distributed.keyed_uniform` of ``start * 64 +
depth``), and every node's output depends on its leaves alone, so where a node is resolved does not
change the sample. Bytes sent per rank: the all-to-all of its open items (32 bytes each), ``(W - 1)``
times ``4 W`` samples, and ``O(W log n)`` node outputs; then the chosen items (16 bytes each) gathered.
"""

from __future__ import annotations

import numpy as np

from selectkit.distributed import Comm, keyed_uniform, subkey
from selectkit.distributed.keyed import Key
from selectkit.sampling import TOL

_ITEM = np.dtype([("cluster", "i8"), ("dist", "f8"), ("pos", "i8"), ("pi", "f8")])
_NODE = np.dtype([("start", "i8"), ("size", "i8"), ("depth", "i8"), ("pos", "i8"), ("pi", "f8"), ("prob", "f8")])
_SAMPLES_PER_RANK = 4


def _by_key(items: np.ndarray) -> np.ndarray:
    return items[np.lexsort((items["pos"], items["dist"], items["cluster"]))]


def _at_most(items: np.ndarray, bound: np.void) -> int:
    """How many of the key-sorted ``items`` are at most ``bound`` (lexicographic key order)."""
    c, d = items["cluster"], items["dist"]
    lo, hi = np.searchsorted(c, bound["cluster"], "left"), np.searchsorted(c, bound["cluster"], "right")
    lo, hi = lo + np.searchsorted(d[lo:hi], bound["dist"], "left"), lo + np.searchsorted(d[lo:hi], bound["dist"], "right")
    return int(lo + np.searchsorted(items["pos"][lo:hi], bound["pos"], "right"))


def _sorted_run(comm: Comm, items: np.ndarray) -> tuple[np.ndarray, int, int]:
    """This rank's run of the globally key-sorted items, its first leaf and the number of leaves."""
    items = _by_key(items)
    if comm.world == 1:
        return items, 0, int(items.size)
    picks = np.unique(np.linspace(0, items.size - 1, num=min(items.size, _SAMPLES_PER_RANK * comm.world)).astype(np.int64)) if items.size else np.zeros(0, np.int64)
    samples = _by_key(np.concatenate(comm.all_gather(items[picks], "sensitivity pivotal: samples")))
    splitters = samples[[j * samples.size // comm.world for j in range(1, comm.world)]] if samples.size else samples
    cuts = [0] + [_at_most(items, s) for s in splitters] + [items.size]
    cuts += [items.size] * (comm.world + 1 - len(cuts))
    got = comm.all_to_all([items[cuts[j] : cuts[j + 1]] for j in range(comm.world)], "sensitivity pivotal: sort")
    run = _by_key(np.concatenate(got))
    sizes = np.concatenate(comm.all_gather(np.array([run.size], dtype=np.int64), "sensitivity pivotal: run sizes"))
    return run, int(sizes[: comm.rank].sum()), int(sizes.sum())


def _duel(sa: np.ndarray, pa: np.ndarray, sb: np.ndarray, pb: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The duels of pairs of survivors (handles, -1 for none) with residuals ``pa``, ``pb``: the
    output survivors and residuals, and the handles chosen (see `selectkit.sampling.pivotal`)."""
    both = (sa >= 0) & (sb >= 0)
    out_s = np.where(sa >= 0, sa, sb)
    out_p = np.where(sa >= 0, pa, pb)
    chosen = []
    if both.any():
        a, b, x, y, w = sa[both], sb[both], pa[both], pb[both], u[both]
        total = x + y
        low = total <= 1.0
        keep_a = w < np.where(low, x / np.where(total > 0, total, 1.0), (1.0 - y) / np.where(2.0 - total > 0, 2.0 - total, 1.0))
        winner, loser = np.where(keep_a, a, b), np.where(keep_a, b, a)
        chosen.append(winner[~low])
        out_s[both] = np.where(low, winner, loser)
        out_p[both] = np.where(low, total, total - 1.0)
    present = out_s >= 0
    chosen.append(out_s[present & (out_p >= 1 - TOL)])
    gone = present & ((out_p <= TOL) | (out_p >= 1 - TOL))
    out_s[gone], out_p[gone] = -1, 0.0
    return out_s, out_p, np.concatenate(chosen)


def _node_ids(start: np.ndarray, depth: np.ndarray) -> np.ndarray:
    return np.asarray(start, dtype=np.int64) * 64 + np.asarray(depth, dtype=np.int64)


def _largest_nodes(a: int, b: int, total: int) -> list[tuple[int, int, int]]:
    """The largest nodes ``(start, size, depth)`` of the tree over ``total`` leaves inside ``[a, b)``."""
    found, stack = [], [(0, total, 0)] if total else []
    while stack:
        start, size, depth = stack.pop()
        if start >= b or start + size <= a:
            continue
        if a <= start and start + size <= b:
            found.append((start, size, depth))
            continue
        half = size // 2
        stack += [(start + half, size - half, depth + 1), (start, half, depth + 1)]
    return sorted(found)


def _resolve_run(key: Key, run: np.ndarray, first: int, nodes: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Resolve the subtrees of ``nodes`` over this rank's leaves: the chosen leaves (indices into
    ``run``) and the nodes' outputs (`_NODE` records)."""
    out = np.zeros(len(nodes), dtype=_NODE)
    if not nodes:
        return np.zeros(0, np.int64), out
    start, size, depth = (np.array(col, dtype=np.int64) for col in zip(*nodes))
    out["start"], out["size"], out["depth"] = start, size, depth
    levels = []
    while start.size:
        levels.append((start, size, depth))
        inner = size >= 2
        s, z, half = start[inner], size[inner], size[inner] // 2
        start = np.stack([s, s + half], axis=1).reshape(-1)
        size = np.stack([half, z - half], axis=1).reshape(-1)
        depth = np.repeat(depth[inner] + 1, 2)
    chosen = []
    surv = prob = np.zeros(0)
    for start, size, depth in reversed(levels):
        leaf = size == 1
        out_s = np.full(size.shape, -1, dtype=np.int64)
        out_p = np.zeros(size.shape)
        out_s[leaf] = start[leaf] - first
        out_p[leaf] = run["pi"][out_s[leaf]]
        if (~leaf).any():
            u = keyed_uniform(key, _node_ids(start[~leaf], depth[~leaf]))
            out_s[~leaf], out_p[~leaf], won = _duel(surv[0::2], prob[0::2], surv[1::2], prob[1::2], u)
            chosen.append(won)
        surv, prob = out_s, out_p
    alive = surv >= 0
    out["pos"] = np.where(alive, run["pos"][np.where(alive, surv, 0)], -1)
    out["pi"] = np.where(alive, run["pi"][np.where(alive, surv, 0)], 0.0)
    out["prob"] = prob
    return (np.concatenate(chosen) if chosen else np.zeros(0, np.int64)), out


def _resolve_top(key: Key, nodes: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """The tree above the gathered node outputs, resolved from the root (the same on every rank):
    the positions chosen there and their ``pi``, the root's last survivor included."""
    known = {(int(r["start"]), int(r["size"])): (int(r["pos"]), float(r["prob"])) for r in nodes}
    pis = {int(r["pos"]): float(r["pi"]) for r in nodes if r["pos"] >= 0}
    chosen: list[int] = []

    def value(start: int, size: int, depth: int) -> tuple[int, float]:
        if (start, size) in known:
            return known[(start, size)]
        half = size // 2
        (sa, pa), (sb, pb) = value(start, half, depth + 1), value(start + half, size - half, depth + 1)
        u = keyed_uniform(key, _node_ids([start], [depth]))
        s, p, won = _duel(np.array([sa]), np.array([pa]), np.array([sb]), np.array([pb]), u)
        chosen.extend(int(w) for w in won)
        return int(s[0]), float(p[0])

    root, residual = value(0, total, 0) if total else (-1, 0.0)
    if root >= 0 and keyed_uniform(subkey(key, 1), np.zeros(1, np.int64))[0] < residual:
        chosen.append(root)
    positions = np.array(chosen, dtype=np.int64)
    return positions, np.array([pis[p] for p in chosen], dtype=np.float64)


def sharded_pivotal(
    comm: Comm, key: Key, pi: np.ndarray, cluster: np.ndarray, dist: np.ndarray, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pivotal sampling of the pool with inclusion probabilities ``pi`` along the order ``(cluster,
    dist, position)`` (this rank's items' values); see the module docstring. Every rank must call it.

    Returns the whole sample on every rank: pool positions ascending and their ``pi``. Items with
    ``pi >= 1`` are taken and items with ``pi = 0`` left out, as in `selectkit.sampling.pivotal`.
    """
    pi = np.asarray(pi, dtype=np.float64)
    certain = pi >= 1 - TOL
    open_ = (pi > TOL) & ~certain
    items = np.empty(int(open_.sum()), dtype=_ITEM)
    items["cluster"], items["dist"], items["pos"], items["pi"] = cluster[open_], dist[open_], positions[open_], pi[open_]
    run, first, total = _sorted_run(comm, items)
    won, nodes = _resolve_run(key, run, first, _largest_nodes(first, first + run.size, total))
    mine = np.empty(int(certain.sum()) + won.size, dtype=[("pos", "i8"), ("pi", "f8")])
    mine["pos"] = np.concatenate([positions[certain], run["pos"][won]])
    mine["pi"] = np.concatenate([pi[certain], run["pi"][won]])
    taken = np.concatenate(comm.all_gather(mine, "sensitivity pivotal: sample"))
    top_pos, top_pi = _resolve_top(key, np.concatenate(comm.all_gather(nodes, "sensitivity pivotal: nodes")), total)
    pos = np.concatenate([taken["pos"], top_pos])
    order = np.argsort(pos, kind="stable")
    return pos[order], np.concatenate([taken["pi"], top_pi])[order]
