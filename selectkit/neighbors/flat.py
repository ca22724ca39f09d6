"""Exact search on CPU: cache-sized GEMM tiles scanned by a compiled top-k kernel (no N x N matrix).

Each tile holds the raw scores ``x . q`` of one base block (rows) against one query block
(columns), written by one matrix product. A compiled kernel then walks the tile once, row by row:
it subtracts the row's bias (``|x|^2 / 2`` for L2, so that ``q . x - |x|^2 / 2`` ranks like
``-|q - x|^2``; nothing for inner products) and compares the whole row with every query's running
``k``-th best score in vector instructions. Only a row that beats some query's ``k``-th best is
walked again to update those queries' bounded min-heaps, which after the first rows is rare. The
tile stays in cache between the product and the scan, so the scan costs a fraction of the product.
Query blocks are shared out to worker threads, each with its own tile and a single-threaded
matrix product, so no parallel region is entered per tile.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from numba import njit

from selectkit.neighbors.memory import Blocks, search_workers

# Kernels use every fast-math flag but "ninf": the heaps start at -inf, which "ninf" would assume away.
FAST = {"nnan", "nsz", "arcp", "contract", "afn", "reassoc"}
MAX_FAILED = 0.25  # when more of the first bfloat16 blocks' certificates fail, the rest of the search runs float32
SELF_BLOCK = 768  # points per block of the self-join: a 768 x 768 tile (2.25 MiB), fastest of 384 to 1024 here


@njit(nogil=True, fastmath=FAST, cache=True, inline="always")
def _worse(s_a: float, i_a: int, s_b: float, i_b: int) -> bool:
    """The heaps' total order: lower score is worse; among equal scores the larger index is worse."""
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(nogil=True, fastmath=FAST, cache=True, inline="always")
def _offer(heap_s: np.ndarray, heap_i: np.ndarray, row: int, value: float, index: int) -> bool:
    """Put ``(value, index)`` in row ``row``'s min-heap if it beats the root; True when it entered.

    With the total order of `_worse`, the heap ends holding the ``k`` best whatever order the
    candidates come in (ties go to the smaller index), which keeps threaded searches deterministic.
    """
    k = heap_s.shape[1]
    if not _worse(heap_s[row, 0], heap_i[row, 0], value, index):
        return False
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        if child + 1 < k and _worse(heap_s[row, child + 1], heap_i[row, child + 1], heap_s[row, child], heap_i[row, child]):
            child += 1
        if not _worse(heap_s[row, child], heap_i[row, child], value, index):
            break
        heap_s[row, pos] = heap_s[row, child]
        heap_i[row, pos] = heap_i[row, child]
        pos = child
    heap_s[row, pos] = value
    heap_i[row, pos] = index
    return True


@njit(nogil=True, fastmath=FAST, cache=True)
def _offer_columns(row: np.ndarray, hb: float, index: int, heap_s: np.ndarray, heap_i: np.ndarray, worst: np.ndarray) -> None:
    """Offer base point ``index`` (scores ``row - hb``) to every query heap it may enter."""
    for c in range(row.shape[0]):
        v = row[c] - hb
        if v >= worst[c] and _offer(heap_s, heap_i, c, v, index):
            worst[c] = heap_s[c, 0]


@njit(nogil=True, fastmath=FAST, cache=True)
def scan_tile(tile: np.ndarray, bias: np.ndarray, ids: np.ndarray, heap_s: np.ndarray, heap_i: np.ndarray, worst: np.ndarray) -> None:
    """Fold the scores ``tile[b, c] - bias[b]`` into query ``c``'s min-heap of the ``k`` best.

    ``tile`` is ``[w, m]`` float32 C-contiguous (base rows, query columns), ``bias`` ``[w]``,
    ``heap_s``/``heap_i`` ``[m, k]`` (score, base index), ``worst`` ``[m]`` each heap's minimum score
    (kept up to date here); ``ids`` ``[w]`` (int64) the index each tile row is known by.
    """
    w, m = tile.shape
    for b in range(w):
        row = tile[b]
        hb = bias[b]
        above = np.int32(0)
        for c in range(m):  # vectorised: could this base point enter any query's heap?
            above += np.int32((row[c] - hb) >= worst[c])
        if above:
            _offer_columns(row, hb, ids[b], heap_s, heap_i, worst)


@njit(nogil=True, fastmath=FAST, cache=True)
def _offer_row(row: np.ndarray, bias: np.ndarray, ids: np.ndarray, r: int, heap_s: np.ndarray, heap_i: np.ndarray, worst: np.ndarray) -> None:
    """Offer every base point of one tile row (scores ``row - bias``, indices ``ids``) to query ``r``'s heap."""
    for c in range(row.shape[0]):
        v = row[c] - bias[c]
        if v >= worst[r] and _offer(heap_s, heap_i, r, v, ids[c]):
            worst[r] = heap_s[r, 0]


@njit(nogil=True, fastmath=FAST, cache=True)
def scan_tile_both(
    tile: np.ndarray,
    bias_rows: np.ndarray,
    ids_rows: np.ndarray,
    bias_cols: np.ndarray,
    ids_cols: np.ndarray,
    col_s: np.ndarray,
    col_i: np.ndarray,
    col_worst: np.ndarray,
    row_s: np.ndarray,
    row_i: np.ndarray,
    row_worst: np.ndarray,
) -> None:
    """`scan_tile` for both sides of a self-join tile in one pass: ``tile[r, c]`` is the product of
    base points ``ids_rows[r]`` and ``ids_cols[c]``; it is offered to column ``c``'s heap
    (``col_*``, score minus ``bias_rows[r]``) and to row ``r``'s heap (``row_*``, score minus
    ``bias_cols[c]``)."""
    w, m = tile.shape
    for r in range(w):
        row = tile[r]
        hb = bias_rows[r]
        threshold = row_worst[r]
        for_cols = np.int32(0)
        for_row = np.int32(0)
        for c in range(m):  # vectorised: one read of the tile serves both directions
            v = row[c]
            for_cols += np.int32((v - hb) >= col_worst[c])
            for_row += np.int32((v - bias_cols[c]) >= threshold)
        if for_cols:
            _offer_columns(row, hb, ids_rows[r], col_s, col_i, col_worst)
        if for_row:
            _offer_row(row, bias_cols, ids_cols, r, row_s, row_i, row_worst)


@njit(nogil=True, fastmath=FAST, cache=True)
def scan_tile_top1(tile: np.ndarray, bias: np.ndarray, offset: int, best_s: np.ndarray, best_i: np.ndarray) -> None:
    """`scan_tile` for ``k = 1``: a branch-free running maximum per query (``best_s``, ``best_i`` ``[m]``)."""
    w, m = tile.shape
    for b in range(w):
        row = tile[b]
        hb = bias[b]
        index = offset + b
        for c in range(m):
            v = row[c] - hb
            better = v > best_s[c]
            best_s[c] = v if better else best_s[c]
            best_i[c] = index if better else best_i[c]


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[int]:
    """Run torch's own kernels on one thread inside the block; yields the thread count it replaced.

    The search parallelises over query blocks itself; nested torch threads would only contend.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield before
    finally:
        torch.set_num_threads(before)


def task_source(items: Iterable[Any]) -> Callable[[], Any]:
    """A thread-safe ``take()`` over ``items``: each item goes to exactly one caller, then None."""
    remaining = iter(items)
    lock = threading.Lock()

    def take() -> Any:
        with lock:
            return next(remaining, None)

    return take


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_in_worker = threading.local()


def _pool(count: int) -> ThreadPoolExecutor:
    """This process's pool of ``count`` worker threads, started on first use and kept (per process id,
    so a forked child starts its own instead of waiting on its parent's threads)."""
    import os

    key = (os.getpid(), count)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ThreadPoolExecutor(count, thread_name_prefix="selectkit-neighbors")
        return pool


def each_row_block(n: int, step: int, work: Callable[[int, int], None]) -> None:
    """``work(start, stop)`` for consecutive blocks of ``step`` rows out of ``n``, spread over the workers."""
    starts = range(0, n, step)
    take = task_source(starts)

    def worker() -> None:
        while (i := take()) is not None:
            work(i, min(n, i + step))

    run_workers(worker, len(starts))


def run_workers(worker: Callable[[], None], jobs: int, workers: int = 0) -> None:
    """Run ``worker`` on as many threads as torch has (or ``workers``), never more than ``jobs``,
    with torch single-threaded meanwhile; a worker's exception is raised here.

    The threads come from a pool kept for the process, so a search pays no thread start-up; a call
    made from inside a worker runs its worker inline instead of waiting on the pool."""

    def pooled() -> None:
        _in_worker.active = True
        try:
            worker()
        finally:
            _in_worker.active = False

    with single_threaded_torch() as threads:
        count = max(1, min(workers or threads, jobs))
        if count == 1 or getattr(_in_worker, "active", False):
            worker()
            return
        pool = _pool(count)
        for job in [pool.submit(pooled) for _ in range(count)]:
            job.result()


class FlatEngine:
    """Exact maximum-score search over a fixed float32 base, tile by tile."""

    def __init__(self, base: np.ndarray, l2: bool, precision: str = "fp32") -> None:
        """``base``: float32 C-contiguous ``[n, d]`` (kept by reference); ``l2`` ranks by Euclidean distance;
        ``precision='bf16'`` runs `search` through the certified bfloat16 pass (`selectkit.neighbors.lowp`,
        same results) with a bfloat16 copy of the base, made by the first search that needs it."""
        import torch

        self.base = torch.from_numpy(base)
        self.bias = score_bias(base, l2)
        self.l2 = l2
        self.precision = precision
        self._low: Any = None  # the bfloat16 copy, made by the first `search` that runs the pass
        self._lock = threading.Lock()
        self.rechecked = 0  # queries of bfloat16 searches whose certificate failed (searched again in float32)
        self.abandoned = 0  # searches that went on in float32 after their first blocks failed more than MAX_FAILED of their certificates

    def _bf16_for(self, k: int) -> Any:
        """The base's `selectkit.neighbors.lowp.Bf16Base` when a search of ``k`` runs the bfloat16 pass
        (made on first use, on the calling thread; self-searches never ask), else None."""
        from selectkit.neighbors.lowp import Bf16Base, heap_width

        if self.precision != "bf16" or heap_width(k) >= self.base.shape[0]:
            return None
        with self._lock:
            if self._low is None:
                self._low = Bf16Base(self.base.numpy(), self.l2)
            return self._low

    def search(self, queries: np.ndarray, k: int, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
        """Scores (largest first) and indices ``[nq, k]``; for L2 the score is ``q . x - |x|^2 / 2``.

        With more than one query block, the queries are first put in `locality_order`, so that a
        block holds queries that are close together: their heaps then want the same few base rows,
        and far fewer tile rows beat some query's ``k``-th best and need walking again (a third of
        the scan's time on clustered data). Results come back in the queries' own order.
        """
        nq = queries.shape[0]
        # seeds of the queries' grouping: at most 1/64 of the base, so that it costs under 2% of the search
        seeds = min(LOCALITY_SEEDS, nq // LOCALITY_GROUP, self.base.shape[0] // 64)
        reorder = nq > blocks.query and k > 1 and seeds >= 2
        if reorder:
            order = locality_order(queries, self.l2, blocks, seeds)
            queries = np.ascontiguousarray(queries[order])
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        indices = np.full((nq, k), -1, dtype=np.int64)
        self._parallel(queries, k, blocks, scores, indices)
        if reorder:
            back = np.empty_like(order)
            back[order] = np.arange(nq)
            scores, indices = scores[back], indices[back]
        return _sorted(scores, indices)

    def search_self(self, k: int, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
        """`search` with the base as the queries, each score computed once for both of its points.

        The base is cut into blocks; for every pair of blocks ``I <= J`` one product ``X_J . X_I^T``
        serves the queries of ``I`` (by columns) and, when ``I < J``, those of ``J`` (by rows), which
        halves the matrix-product work. A block's heaps are updated under its own lock; the heaps'
        total order makes the result independent of the order the pairs run in.

        With more than one block, the points are first put in `locality_order`, so that a block
        holds points that are close together. The diagonal pairs, which run first, then give every
        heap a tight ``k``-th best early, and the scan of the other pairs rarely finds a score
        that beats it. Heaps hold the original indices, so the result is the same as without
        the reordering.
        """
        import torch

        n = self.base.shape[0]
        size = max(1, min(SELF_BLOCK, int(np.sqrt(blocks.query * blocks.base))))
        edges = list(range(0, n, size)) + [n]
        count = len(edges) - 1
        reorder = count > 1 and k > 1
        if reorder:
            order = locality_order(self.base.numpy(), self.l2, blocks)
            base, bias = torch.from_numpy(self.base.numpy()[order]), self.bias[order]
        else:
            order, base, bias = np.arange(n), self.base, self.bias
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        indices = np.full((n, k), -1, dtype=np.int64)
        worst = np.full(n, -np.inf, dtype=np.float32)
        # Pairs by diagonal, so that consecutive pairs rarely share a block (and a lock).
        next_pair = task_source((i, i + gap) for gap in range(count) for i in range(count - gap))
        locks = [threading.Lock() for _ in range(count)]

        def worker() -> None:
            buffer = torch.empty(size * size, dtype=torch.float32)
            with torch.inference_mode():
                while (pair := next_pair()) is not None:
                    bi, bj = pair
                    i0, i1, j0, j1 = edges[bi], edges[bi + 1], edges[bj], edges[bj + 1]
                    tile = buffer[: (j1 - j0) * (i1 - i0)].view(j1 - j0, i1 - i0)
                    torch.mm(base[j0:j1], base[i0:i1].T, out=tile)
                    t = tile.numpy()
                    if bi == bj:
                        with locks[bi]:
                            scan_tile(t, bias[j0:j1], order[j0:j1], scores[i0:i1], indices[i0:i1], worst[i0:i1])
                        continue
                    with locks[bi], locks[bj]:  # always the lower block first: no deadlock
                        scan_tile_both(
                            t, bias[j0:j1], order[j0:j1], bias[i0:i1], order[i0:i1],
                            scores[i0:i1], indices[i0:i1], worst[i0:i1], scores[j0:j1], indices[j0:j1], worst[j0:j1],
                        )

        run_workers(worker, count * (count + 1) // 2, blocks.workers)
        if reorder:  # heap rows are in locality order: put them back in point order
            back = np.empty_like(order)
            back[order] = np.arange(n)
            scores, indices = scores[back], indices[back]
        return _sorted(scores, indices)

    def assign(self, points: np.ndarray, blocks: Blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each point's best base row, in one sweep: ``(scores [n], labels [n], counts [n_base])``,
        ``counts`` the number of points assigned to each base row (int64)."""
        scores = np.full((points.shape[0], 1), -np.inf, dtype=np.float32)
        labels = np.full((points.shape[0], 1), -1, dtype=np.int64)
        self._parallel(points, 1, blocks, scores, labels)
        labels = labels[:, 0]
        return scores[:, 0], labels, np.bincount(labels, minlength=self.base.shape[0])

    def _parallel(self, queries, k, blocks, scores, indices) -> None:
        """Spread the query blocks over the workers.

        Through the bfloat16 pass, the first blocks (one per worker) go first; when more than
        `MAX_FAILED` of their queries fail the certificate (data whose scores crowd the k-th best
        more closely than bfloat16 can tell apart), the other blocks run float32 products, which are
        faster there. The choice depends on the data alone, never on the thread schedule.
        """
        nq = queries.shape[0]
        if nq == 0:
            return
        starts = list(range(0, nq, blocks.query))
        low = self._bf16_for(k)
        if low is not None and len(starts) > 1:
            workers = max(1, min(blocks.workers or search_workers(), len(starts)))
            pilot, starts = starts[:workers], starts[workers:]
            failed = self._blocks(queries, k, blocks, pilot, scores, indices, low)
            tried = min(nq, pilot[-1] + blocks.query)
            if failed > MAX_FAILED * tried:
                low = None
                with self._lock:
                    self.abandoned += 1
        self._blocks(queries, k, blocks, starts, scores, indices, low)

    def _blocks(self, queries, k, blocks, starts, scores, indices, low) -> int:
        """The query blocks at ``starts`` on the workers (bfloat16 pass when ``low``); returns the
        queries whose certificate failed."""
        next_start = task_source(starts)
        failed = [0]

        def worker() -> None:
            count = self._run(queries, k, blocks, next_start, scores, indices, low)
            with self._lock:
                failed[0] += count
                self.rechecked += count

        if starts:
            run_workers(worker, len(starts), blocks.workers)
        return failed[0]

    def _run(self, queries, k, blocks, next_start, scores, indices, low) -> int:
        """One worker: take query blocks until none is left; each sweeps the base tile by tile, through
        the bfloat16 pass with ``low`` (a `selectkit.neighbors.lowp.Bf16Base`). Returns the queries whose
        certificate failed (searched again in float32)."""
        import torch

        from selectkit.neighbors.lowp import certified_sweep

        n = self.base.shape[0]
        size = blocks.query * min(blocks.base, n)
        buffer = torch.empty(size, dtype=torch.float32)
        half = torch.empty(size, dtype=torch.bfloat16) if low is not None else None
        q_all = torch.from_numpy(queries)
        failed = 0
        with torch.inference_mode():
            while (i := next_start()) is not None:
                m = min(blocks.query, queries.shape[0] - i)
                if low is None:
                    sweep(self.base, self.bias, q_all[i : i + m], scores[i : i + m], indices[i : i + m], blocks.base, buffer)
                else:
                    failed += certified_sweep(low, self.base, self.bias, q_all[i : i + m], scores[i : i + m], indices[i : i + m], blocks.base, (half, buffer))
        return failed


LOCALITY_GROUP = 128  # points per seed of `locality_order`'s grouping
LOCALITY_SEEDS = 1024  # at most this many seeds


def locality_order(base: np.ndarray, l2: bool, blocks: Blocks, seeds: int | None = None) -> np.ndarray:
    """A permutation of the base's rows that keeps close points together.

    Every point joins its best-scoring seed among ``n / LOCALITY_GROUP`` evenly spaced base points
    (capped at ``LOCALITY_SEEDS``), with the engine's own score; points are then ordered by seed,
    and by index within a seed. No random choice is made: the order depends on the data alone. The
    cost is one top-1 search against the seeds, about ``2 / LOCALITY_GROUP`` of the self-join's
    product work. ``seeds`` fixes the number of seeds instead.
    """
    n = base.shape[0]
    count = min(LOCALITY_SEEDS, n // LOCALITY_GROUP) if seeds is None else seeds
    rows = np.linspace(0, n - 1, max(2, count)).astype(np.int64)
    _, labels, _ = FlatEngine(np.ascontiguousarray(base[rows]), l2).assign(base, blocks)
    return np.argsort(labels, kind="stable")


def _sorted(scores: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row best first: score descending, then index ascending (the heaps' order)."""
    if scores.shape[1] == 1:
        return scores, indices
    order = np.lexsort((indices, -scores), axis=-1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)


def score_bias(base: np.ndarray, l2: bool) -> np.ndarray:
    """What the scan subtracts from ``x . q`` per base row: ``|x|^2 / 2`` for L2, zero for inner products."""
    if l2:
        return np.einsum("ij,ij->i", base, base, dtype=np.float32) * np.float32(0.5)
    return np.zeros(base.shape[0], dtype=np.float32)


def sweep(base, bias: np.ndarray, q, heap_s: np.ndarray, heap_i: np.ndarray, base_block: int, buffer) -> None:
    """Fold every base row into the heaps of one query block, one ``[w, m]`` tile at a time.

    ``base`` ``[n, d]`` and ``q`` ``[m, d]`` are float32 torch tensors, ``heap_s``/``heap_i`` the
    block's ``[m, k]`` results (updated in place), ``buffer`` a float32 tensor of at least
    ``m * min(base_block, n)`` elements. Runs on the calling thread.
    """
    import torch

    n, m, k = base.shape[0], q.shape[0], heap_s.shape[1]
    worst = heap_s[:, 0].copy()
    best_i = heap_i[:, 0].copy()
    for j in range(0, n, base_block):
        w = min(base_block, n - j)
        tile = buffer[: m * w].view(w, m)
        torch.mm(base[j : j + w], q.T, out=tile)
        if k == 1:
            scan_tile_top1(tile.numpy(), bias[j : j + w], j, worst, best_i)
        else:
            scan_tile(tile.numpy(), bias[j : j + w], np.arange(j, j + w), heap_s, heap_i, worst)
    if k == 1:
        heap_s[:, 0], heap_i[:, 0] = worst, best_i
