"""k-means over a sharded pool: k-means|| seeding and Lloyd's iterations with all-reduced sums.

`kmeans_parallel_init` follows Bahmani et al., "Scalable K-Means++" (k-means||): one first centre, then
``rounds`` oversampling rounds in which every point joins the candidates independently with probability
``min(1, l d^2(x, C) / phi)`` (``l = oversampling * k``, ``phi`` the cost of the candidates so far).
A point's draw is a keyed uniform of its global id (`selectkit.distributed.keyed`), so the candidates
do not depend on the world size. The candidates, about ``rounds * l``, are weighted by the points
nearest to them, and a weighted k-means++ seeding plus a few weighted Lloyd iterations on that small
set, run identically on every rank from one generator of the seed, give the ``k`` centres. A round is
one all-gather of the new candidates and one block-ordered sum; k-means++ would need ``k`` rounds.
Memory per rank: the shard's nearest-candidate distances (``4 n_local``) and the candidates.

`sharded_kmeans` runs Lloyd from there: each rank assigns its rows through the neighbour layer's
exact search, one logical block at a time, and per-cluster sums and counts are added over the ranks,
in rank order (``reduce='rank'``: one ``k (d + 1)`` all-reduce per iteration, equal across world
sizes to rounding) or along the fixed block tree (``reduce='block'``: the same sums at every world
size, ``O(log B_r)`` times the traffic). A cluster left empty restarts at the point farthest from its
centroid (global top-k, ties by lowest id), taken out of that point's cluster, as the layer's Lloyd
does; iterations stop when no assignment changes. Memory per rank: ``O(n_local + k d)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from selectkit.distributed.collectives import Comm, global_topk
from selectkit.distributed.keyed import key_generator, keyed_uniform, subkey
from selectkit.distributed.shard import ShardedArray, is_count
from selectkit.errors import ConfigError
from selectkit.neighbors import NeighborConfig, NeighborIndex
from selectkit.neighbors import kmeans as layer_kmeans
from selectkit.neighbors.config import resolve
from selectkit.neighbors.inputs import as_float32, normalized

_FIRST, _ROUND, _SEEDING = 0x4B01, 0x4B02, 0x4B03
_SUM_ROWS = 4096  # rows per float64 chunk of the cluster sums


@dataclass(frozen=True)
class ParallelInit:
    """What `kmeans_parallel_init` returns: ``centroids`` float32 ``[k, d]`` (the same on every rank),
    the oversampling ``rounds`` run, and the number of ``candidates`` they drew."""

    centroids: np.ndarray
    rounds: int
    candidates: int


@dataclass(frozen=True)
class ShardedKMeansResult:
    """What `sharded_kmeans` returns.

    Attributes:
        centroids: float32 ``[k, d]`` final centres, the same on every rank.
        assignment: int64 ``[n_local]`` each local row's nearest final centre.
        distances: float32 ``[n_local]`` its squared L2 distance to it (for 'cosine', between unit vectors).
        inertia: the sum of every rank's distances (float64, block-ordered: the same on every rank).
        n_iter: Lloyd iterations run (updates made).
        init_rounds: k-means|| oversampling rounds (0 when ``init`` was given).
        candidates: k-means|| candidates drawn (0 when ``init`` was given).
    """

    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray
    inertia: float
    n_iter: int
    init_rounds: int
    candidates: int


def _settings(config: NeighborConfig | None) -> tuple[NeighborConfig, bool]:
    """The exact L2 search every assignment runs, and whether the k-means is spherical ('cosine')."""
    config = resolve(config)
    if config.metric == "ip":
        raise ConfigError("neighbors.metric='ip' has no k-means objective; use neighbors.metric=l2 or cosine")
    return NeighborConfig(**{**vars(config), "backend": "flat", "metric": "l2"}), config.metric == "cosine"


def _prepared(rows: Any, spherical: bool) -> np.ndarray:
    """Rows as the iterations see them: float32, unit norm when spherical."""
    rows = as_float32(rows, "x")
    return normalized(rows) if spherical else rows


def _assign(x: ShardedArray, centres: np.ndarray, exact: NeighborConfig, spherical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each local row's nearest centre and squared distance, searched one logical block at a time."""
    labels = np.empty(x.layout.n_local, dtype=np.int64)
    dist = np.empty(x.layout.n_local, dtype=np.float32)
    index = NeighborIndex(n_neighbors=1, config=exact).fit(centres)
    for b, rows in x.layout.local_blocks():
        d, i = index.search(_prepared(x.local[rows], spherical), 1)
        labels[rows], dist[rows] = i[:, 0], d[:, 0]
    return labels, dist


def _total(comm: Comm, x: ShardedArray, values: np.ndarray) -> float:
    """The float64 sum of a per-row array over the pool, block-ordered (the same at every world size)."""
    parts = np.array([values[rows].sum(dtype=np.float64) for _, rows in x.layout.local_blocks()])
    return float(comm.block_sum(parts, x.layout))


def _fetch(comm: Comm, x: ShardedArray, picked: np.ndarray, spherical: bool) -> np.ndarray:
    """The prepared rows of the local row positions ``picked``, from every rank, in global id order."""
    d = x.local.shape[1]
    rows = _prepared(x.local[picked], spherical) if picked.size else np.zeros((0, d), dtype=np.float32)
    return np.concatenate(comm.all_gather(rows, "kmeans: candidates"))


def _check_k(k: Any, n: int) -> int:
    if not is_count(k, 1) or k > n:
        raise ValueError(f"k={k!r} must be an integer between 1 and the {n} points to cluster")
    return int(k)


def weighted_kmeanspp(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding of weighted points: ``k`` distinct row indices, each drawn with probability
    proportional to its weight times its squared distance to the nearest row drawn so far (the first
    by weight alone). Rows of weight 0 are drawn only when no other is left (uniformly then)."""
    x = points.astype(np.float64)
    w = np.asarray(weights, dtype=np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    mind = np.full(x.shape[0], np.inf)
    taken = np.zeros(x.shape[0], dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    for step in range(k):
        p = np.where(taken, 0.0, w if step == 0 else w * mind)
        cum = np.cumsum(p)
        if cum[-1] > 0:
            row = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), int(np.flatnonzero(p > 0)[-1]))
        else:
            free = np.flatnonzero(~taken)
            row = int(free[rng.integers(free.size)])
        picks[step], taken[row] = row, True
        np.minimum(mind, np.maximum(sq + sq[row] - 2.0 * (x @ x[row]), 0.0), out=mind)
    return picks


def kmeans_parallel_init(
    comm: Comm,
    x: ShardedArray,
    k: int,
    *,
    seed: int = 0,
    rounds: int = 5,
    oversampling: float = 2.0,
    lloyd_iter: int = 10,
    config: NeighborConfig | None = None,
) -> ParallelInit:
    """k-means|| seeding of ``k`` centres over the sharded rows ``x`` (see the module docstring).

    ``rounds`` oversampling rounds draw about ``oversampling * k`` candidates each; ``lloyd_iter``
    weighted Lloyd iterations refine the weighted k-means++ seeding of the candidates. Every rank must
    call it; the centres are the same on every rank and at every world size (bit for bit as long as no
    point's draw lies within rounding of its probability).

    Bytes sent per rank: per round ``(W - 1) * 4 d * max_r c_r`` (``c_r`` candidates drawn on rank
    ``r``, about ``l / W``) and a scalar block sum; then one ``8 C`` all-reduce of the candidates'
    weights (``C`` candidates).
    """
    exact, spherical = _settings(config)
    comm.check_layout(x.layout)
    k = _check_k(k, x.n)
    if not is_count(rounds):
        raise ValueError(f"rounds={rounds!r} must be a non-negative integer")
    if not oversampling > 0:
        raise ValueError(f"oversampling={oversampling!r} must be positive")
    ids = x.ids
    first = global_topk(comm, keyed_uniform(subkey(seed, _FIRST), ids), ids, 1, largest=False)
    picked = np.flatnonzero(ids == first.ids[0])
    candidates = _fetch(comm, x, picked, spherical)
    _, dist = _assign(x, candidates, exact, spherical)
    phi = _total(comm, x, dist)
    done = 0
    for r in range(int(rounds)):
        if not phi > 0:
            break
        p = np.minimum(1.0, oversampling * k * dist.astype(np.float64) / phi)
        new = _fetch(comm, x, np.flatnonzero(keyed_uniform(subkey(seed, _ROUND, r), ids) < p), spherical)
        done += 1
        if new.shape[0]:
            candidates = np.concatenate([candidates, new])
            np.minimum(dist, _assign(x, new, exact, spherical)[1], out=dist)
            phi = _total(comm, x, dist)
    if candidates.shape[0] < k:
        far = global_topk(comm, dist, ids, k - candidates.shape[0], largest=True)
        candidates = np.concatenate([candidates, _fetch(comm, x, np.flatnonzero(np.isin(ids, far.ids)), spherical)])
    labels, _ = _assign(x, candidates, exact, spherical)
    weights = comm.all_sum(np.bincount(labels, minlength=candidates.shape[0])).astype(np.float64)
    start = candidates[weighted_kmeanspp(candidates, weights, k, key_generator(subkey(seed, _SEEDING)))]
    refined = layer_kmeans(
        candidates, k, n_iter=max(1, int(lloyd_iter)), seed=seed, init=start, config=resolve(config), sample_weight=weights
    ).centroids if lloyd_iter else start
    return ParallelInit(np.ascontiguousarray(refined, dtype=np.float32), done, int(candidates.shape[0]))


def _cluster_sums(comm: Comm, x: ShardedArray, labels: np.ndarray, k: int, reduce: str, spherical: bool) -> np.ndarray:
    """Per-cluster float64 sums and counts over the pool, ``[k, d + 1]`` (counts last)."""
    d = x.local.shape[1]

    def partial(b: int) -> np.ndarray:
        lo = x.layout.block_bounds(b)[0] - x.layout.lo
        rows, lab = x.block(b), labels[lo : lo + x.block(b).shape[0]]
        out = np.zeros((k, d + 1))
        for start in range(0, rows.shape[0], _SUM_ROWS):
            chunk = _prepared(rows[start : start + _SUM_ROWS], spherical).astype(np.float64)
            cl = lab[start : start + _SUM_ROWS]
            order = np.argsort(cl, kind="stable")
            sorted_labels = cl[order]
            heads = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
            present = sorted_labels[heads]
            out[present, :d] += np.add.reduceat(chunk[order], heads, axis=0)
            out[present, d] += np.diff(np.r_[heads, cl.size])
        return out

    if reduce == "block":
        return comm.block_sum(partial, x.layout, shape=(k, d + 1))
    local = np.zeros((k, d + 1))
    for b in x.layout.blocks:
        local += partial(b)
    return comm.all_sum(local)


def sharded_kmeans(
    comm: Comm,
    x: ShardedArray,
    k: int,
    *,
    n_iter: int = 20,
    seed: int = 0,
    init: Any = None,
    rounds: int = 5,
    oversampling: float = 2.0,
    reduce: str = "rank",
    config: NeighborConfig | None = None,
) -> ShardedKMeansResult:
    """Lloyd's k-means over the sharded rows ``x`` from ``init`` (``[k, d]``, the same on every rank)
    or from `kmeans_parallel_init` (``seed``, ``rounds``, ``oversampling``); see the module docstring.

    ``reduce='rank'`` adds the sums in rank order: inertia equal across world sizes to about 1e-6
    relative, assignments equal except points within rounding of a tie. ``reduce='block'`` adds them
    along the block tree: the sums are the same at every world size. ``config.metric='cosine'`` runs
    spherical k-means on unit vectors. Every rank must call it.

    Bytes sent per rank per iteration: ``2 (W - 1) / W * 8 k (d + 1)`` (``'rank'``; ``'block'``: the
    `Comm.block_sum` formula with ``s = k (d + 1)``), one integer all-reduce, and per empty cluster a
    `global_topk` entry of ``4 d + 24`` bytes.
    """
    exact, spherical = _settings(config)
    comm.check_layout(x.layout)
    k = _check_k(k, x.n)
    if not is_count(n_iter, 1):
        raise ValueError(f"n_iter={n_iter!r} must be a positive integer")
    if reduce not in ("rank", "block"):
        raise ValueError(f"reduce={reduce!r} must be 'rank' or 'block'")
    d = x.local.shape[1]
    if init is None:
        seeding = kmeans_parallel_init(comm, x, k, seed=seed, rounds=rounds, oversampling=oversampling, config=config)
        centroids, init_rounds, drawn = seeding.centroids, seeding.rounds, seeding.candidates
    else:
        centroids, init_rounds, drawn = _prepared(init, spherical).copy(), 0, 0
        if centroids.shape != (k, d):
            raise ValueError(f"init has shape {centroids.shape}; k-means needs [k, d] = {(k, d)}")
    ids = x.ids
    previous = np.full(x.layout.n_local, -1, dtype=np.int64)
    done = 0
    for _ in range(int(n_iter)):
        labels, dist = _assign(x, centroids, exact, spherical)
        if done and int(comm.all_sum(int((labels != previous).sum()))) == 0:
            break
        previous = labels
        totals = _cluster_sums(comm, x, labels, k, reduce, spherical)
        sums, counts = totals[:, :d], totals[:, d]
        empty = np.flatnonzero(counts == 0)
        updated = centroids.astype(np.float64)
        far_rows = np.zeros((0, d))
        if empty.size:
            far = global_topk(comm, dist, ids, int(empty.size), largest=True, payload={"row": x.local, "label": labels})
            far_rows = _prepared(far.payload["row"], spherical).astype(np.float64)
            for row, label in zip(far_rows, far.payload["label"]):
                sums[label] -= row
                counts[label] -= 1
        filled = counts > 0
        filled[empty] = False
        updated[filled] = sums[filled] / counts[filled, None]
        updated[empty] = far_rows
        centroids = updated.astype(np.float32)
        if spherical:
            centroids = normalized(centroids)
        done += 1
    labels, dist = _assign(x, centroids, exact, spherical)
    return ShardedKMeansResult(centroids, labels, dist, _total(comm, x, dist), done, init_rounds, drawn)
