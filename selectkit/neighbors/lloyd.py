"""Lloyd's iterations on CPU, below both k-means and IVF training.

The loop imports only the layer's thread setting and the kernels' fast-math flags, so
`selectkit.neighbors.kmeans` (which also assigns through `NeighborIndex`) and
`selectkit.neighbors.ivf` (which trains its coarse quantizer here) both sit above it, and neither
depends on the other.

Each iteration is one compiled parallel loop (numba ``prange``) over fixed blocks of points. A
block is cut into chunks; each chunk's scores ``x . c`` against every centroid come from one
single-threaded BLAS ``sgemm`` into the block's own small tile (no ``n x k`` matrix), a branch-free
scan keeps each point's best ``x . c - |c|^2 / 2``, and, while the chunk is still in cache, its
points are added (in float64, weighted when weights are given) to the block's own partial sums.
After the loop the partial sums are added in block order. Blocks have a fixed size that depends
on the data's shape only, so the centroids do not depend on the thread count or on which thread
took which block. One parallel region per iteration, and between iterations only a few array
operations on ``k x d`` centroids run in Python.

A cluster left empty (no weight) restarts at the point farthest from its centroid, taken out of
that point's cluster, as scikit-learn's Lloyd does. Iterations stop early when no assignment
changes (scikit-learn's ``tol=0`` rule).

Threads: as many as the layer's setting (``torch.get_num_threads()``) and never more than
numba's own (``numba.get_num_threads()``); the BLAS behind scipy is held at one thread for the
duration, since every block already runs on its own thread.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange, types

from selectkit.neighbors.config import NeighborConfig
from selectkit.neighbors.flat import FAST
from selectkit.neighbors.inputs import normalized
from selectkit.neighbors.memory import search_workers

SUM_BLOCK = 4096  # points per block of partial sums (the unit of work, and of the summation order)
PART_BYTES = 64 * 2**20  # cap on all blocks' partial sums together: larger blocks above it
TILE_BYTES = 512 * 2**10  # one chunk's score tile (stays in the core's L2 with the chunk's points)
MIN_CHUNK, MAX_CHUNK = 16, 512  # points per sgemm call

_SGEMM_SYMBOL = "selectkit_lloyd_sgemm"
_sgemm = types.ExternalFunction(_SGEMM_SYMBOL, types.void(*([types.voidptr] * 13)))
_blas: list = []  # the threadpoolctl controller of the loaded BLAS, once scipy's sgemm is linked
_inherited_threads = [False]  # a forked child of a process whose numba threads had started


def _note_fork() -> None:
    """In a forked child: remember whether the parent had started numba's thread pool. GNU
    OpenMP is not fork-safe (numba ends such a child rather than let it hang), so the child runs
    the iterations on its own thread instead."""
    from numba.np.ufunc import parallel

    _inherited_threads[0] = _inherited_threads[0] or bool(getattr(parallel, "_is_initialized", True))


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_note_fork)


def single_threaded_blas():
    """A context that holds the BLAS libraries at one thread; links scipy's ``sgemm`` (Fortran
    interface) for the kernels on first use. The controller is made once per process (making one
    scans the loaded libraries, about 4 ms)."""
    if not _blas:
        import llvmlite.binding
        from numba.extending import get_cython_function_address
        from threadpoolctl import ThreadpoolController

        llvmlite.binding.add_symbol(_SGEMM_SYMBOL, get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
        _blas.append(ThreadpoolController())
    return _blas[0].limit(limits=1, user_api="blas")


def _numba_threads() -> int:
    """``numba.get_num_threads()``, keeping torch's thread count: the first call starts numba's
    OpenMP pool, which sets the process's OpenMP thread count (torch's too) to numba's default."""
    import numba
    import torch

    torch_threads = torch.get_num_threads()
    threads = numba.get_num_threads()
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return threads


def layout(n: int, k: int, d: int) -> tuple[int, int]:
    """``(points per block, points per sgemm chunk)`` for ``n`` points, ``k`` centroids, ``d`` dimensions.

    Both depend on the shape alone (never on the thread count), so the summation order, and with it
    the result, is the same on any number of threads.
    """
    row = k * d * 8
    blocks = max(1, min(-(-n // SUM_BLOCK), PART_BYTES // row))
    block = max(SUM_BLOCK, -(-n // blocks))
    chunk = max(MIN_CHUNK, min(MAX_CHUNK, TILE_BYTES // (4 * k)))
    return block, min(chunk, block)


def partial_sums_bytes(n: int, k: int, d: int) -> int:
    """Memory held by one iteration's per-block partial sums, masses and counts."""
    block, _ = layout(n, k, d)
    return -(-n // block) * k * (d + 2) * 8


@njit(nogil=True, fastmath=FAST, cache=True)
def _chunk(data, start, m, centroids, half, weights, labels, scores, tile, best_s, best_i, ps, pm, pc, dims, one, zero, trans):
    """Assign the ``m`` points from ``start`` and add them to the block's partial sums; returns how many changed label."""
    d = data.shape[1]
    k = centroids.shape[0]
    chunk = tile.shape[1]
    # Column-major view: tile (chunk x k, ldc = chunk) = X[start:start+m] (m x d) . C^T (d x k).
    dims[0] = m
    dims[1] = k
    dims[2] = d
    dims[3] = d
    dims[4] = chunk
    _sgemm(
        trans[0:].ctypes, trans[1:].ctypes, dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes, one.ctypes,
        data[start:].ctypes, dims[3:].ctypes, centroids.ctypes, dims[3:].ctypes, zero.ctypes, tile.ctypes, dims[4:].ctypes,
    )
    for i in range(m):
        best_s[i] = -np.inf
        best_i[i] = 0
    for j in range(k):  # vectorised over the chunk's points; ties keep the lowest centroid index
        row = tile[j]
        h = half[j]
        for i in range(m):
            v = row[i] - h
            better = v > best_s[i]
            best_s[i] = v if better else best_s[i]
            best_i[i] = j if better else best_i[i]
    weighted = weights.shape[0] > 0
    moved = 0
    for i in range(m):
        p = start + i
        label = best_i[i]
        w = weights[p] if weighted else 1.0
        if labels[p] != label and w > 0:
            moved += 1
        labels[p] = label
        scores[p] = best_s[i]
        pm[label] += w
        pc[label] += 1
        total = ps[label]
        x = data[p]
        if weighted:
            for t in range(d):
                total[t] += w * x[t]
        else:
            for t in range(d):
                total[t] += x[t]
    return moved


@njit(nogil=True, fastmath=FAST, cache=True)
def _block(b, data, centroids, half, weights, labels, scores, part_sums, part_mass, part_count, changed, block, chunk):
    """Block ``b``: assign its points, fill its partial sums ``part_*[b]`` and its label changes ``changed[b]``."""
    n = data.shape[0]
    k = centroids.shape[0]
    ps = part_sums[b]
    pm = part_mass[b]
    pc = part_count[b]
    ps[:] = 0.0
    pm[:] = 0.0
    pc[:] = 0
    tile = np.empty((k, chunk), dtype=np.float32)
    best_s = np.empty(chunk, dtype=np.float32)
    best_i = np.empty(chunk, dtype=np.int64)
    dims = np.empty(5, dtype=np.int32)
    one = np.ones(1, dtype=np.float32)
    zero = np.zeros(1, dtype=np.float32)
    trans = np.array([84, 78], dtype=np.uint8)  # "T", "N"
    moved = 0
    end = min(n, (b + 1) * block)
    for start in range(b * block, end, chunk):
        m = min(chunk, end - start)
        moved += _chunk(
            data, start, m, centroids, half, weights, labels, scores, tile, best_s, best_i, ps, pm, pc, dims, one, zero, trans
        )
    changed[b] = moved


@njit(parallel=True, cache=True)
def _iteration(data, centroids, half, weights, labels, scores, part_sums, part_mass, part_count, changed, block, chunk):
    """One assignment sweep over every block: a single parallel region."""
    for b in prange(part_sums.shape[0]):
        _block(b, data, centroids, half, weights, labels, scores, part_sums, part_mass, part_count, changed, block, chunk)


@njit(nogil=True, cache=True)
def _iteration_serial(data, centroids, half, weights, labels, scores, part_sums, part_mass, part_count, changed, block, chunk):
    """`_iteration` on the calling thread alone (same blocks, same result)."""
    for b in range(part_sums.shape[0]):
        _block(b, data, centroids, half, weights, labels, scores, part_sums, part_mass, part_count, changed, block, chunk)


@njit(nogil=True, cache=True)
def _reduce(part_sums, part_mass, part_count, sums, mass, counts):
    """Add the blocks' partial sums in block order."""
    sums[:] = 0.0
    mass[:] = 0.0
    counts[:] = 0
    for b in range(part_sums.shape[0]):
        sums += part_sums[b]
        mass += part_mass[b]
        counts += part_count[b]


def lloyd(
    data: np.ndarray,
    centroids: np.ndarray,
    n_iter: int,
    spherical: bool = False,
    weights: np.ndarray | None = None,
    config: NeighborConfig | None = None,
) -> tuple[np.ndarray, int]:
    """Up to ``n_iter`` Lloyd iterations (L2) from ``centroids``: ``(centroids float32 [k, d], iterations run)``.

    ``data`` is float32 C-contiguous ``[n, d]``; ``weights`` (float64 ``[n]``, non-negative, checked
    by the caller) make each centroid the weighted mean of its points. ``spherical`` renormalises
    the centroids after each update. The iterations run are the updates made: an iteration whose
    assignment (of the points with a positive weight) equals the previous one ends the loop
    without updating. ``config`` is accepted for the callers' symmetry and not used: blocks here
    depend on the data's shape alone, threads on torch's and numba's settings, and the caller
    checks the memory cap (`partial_sums_bytes` is this loop's share beyond the data).
    """
    import numba

    data = np.ascontiguousarray(data, dtype=np.float32)
    centroids = np.array(centroids, dtype=np.float32)
    n, d = data.shape
    k = centroids.shape[0]
    w = np.zeros(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    block, chunk = layout(n, k, d)
    count = -(-n // block)
    part_sums = np.empty((count, k, d))
    part_mass = np.empty((count, k))
    part_count = np.empty((count, k), dtype=np.int64)
    changed = np.empty(count, dtype=np.int64)
    sums, mass, counts = np.empty((k, d)), np.empty(k), np.empty(k, dtype=np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    scores = np.empty(n, dtype=np.float32)
    serial = _inherited_threads[0]
    threads = 1 if serial else max(1, min(search_workers(), _numba_threads(), count))
    sweep = _iteration_serial if threads == 1 else _iteration
    before = 0 if serial else numba.get_num_threads()
    done = 0
    sq_norms = None
    with single_threaded_blas():
        if not serial:
            numba.set_num_threads(threads)
        try:
            for _ in range(n_iter):
                half = np.einsum("ij,ij->i", centroids, centroids, dtype=np.float32) * np.float32(0.5)
                sweep(data, centroids, half, w, labels, scores, part_sums, part_mass, part_count, changed, block, chunk)
                if done and not changed.any():
                    break  # converged: the update would give the same centroids
                _reduce(part_sums, part_mass, part_count, sums, mass, counts)
                empty = np.flatnonzero(mass == 0)
                updated = centroids.copy()
                far = np.zeros(0, dtype=np.int64)
                if empty.size:
                    # The farthest points from their centroids (|x|^2 - 2 * score) start the empty clusters.
                    if sq_norms is None:
                        sq_norms = np.einsum("ij,ij->i", data, data, dtype=np.float32)
                    dist = sq_norms - 2 * scores
                    far = np.argpartition(dist, -empty.size)[-empty.size :]
                    far = far[np.argsort(-dist[far], kind="stable")]
                    for point in far:
                        weight = 1 if weights is None else w[point]
                        sums[labels[point]] -= weight * data[point]
                        mass[labels[point]] -= weight
                        counts[labels[point]] -= 1
                filled = (counts > 0) & (mass > 0)
                filled[empty] = False
                updated[filled] = sums[filled] / mass[filled, None]
                updated[empty] = data[far]
                centroids = np.ascontiguousarray(normalized(updated) if spherical else updated, dtype=np.float32)
                done += 1
        finally:
            if not serial:
                numba.set_num_threads(before)
    return centroids, done
