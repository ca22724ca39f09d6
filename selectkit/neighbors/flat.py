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
SORTED_MAX_K = 16  # `scan_tile_sorted` inserts in k steps per row; above this many neighbours a heap walk is cheaper
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
def scan_tile_sorted(tile: np.ndarray, bias: np.ndarray, ids: np.ndarray, heap_s: np.ndarray, heap_i: np.ndarray, worst: np.ndarray) -> None:
    """`scan_tile` for tiles where most rows enter some heap (a chunk's own tile, its heaps still empty).

    While it walks the tile, each query's ``k`` best are kept as a sorted column of ``[k, m]``
    arrays, and a row that beats some query's ``k``-th best goes into every column at once through
    ``k`` compare-exchange steps without branches (in vector instructions), instead of a heap walk
    per column with a branch per entry. Same arguments and result as `scan_tile`; the heaps are
    written back sorted worst first, which is a valid heap.
    """
    w, m = tile.shape
    k = heap_s.shape[1]
    top_s = np.empty((k, m), dtype=np.float32)
    top_i = np.empty((k, m), dtype=np.int64)
    for c in range(m):  # each heap into its column, best first (insertion sort in the heaps' order)
        for j in range(k):
            s, i = heap_s[c, j], heap_i[c, j]
            p = j - 1
            while p >= 0 and _worse(top_s[p, c], top_i[p, c], s, i):
                top_s[p + 1, c], top_i[p + 1, c] = top_s[p, c], top_i[p, c]
                p -= 1
            top_s[p + 1, c], top_i[p + 1, c] = s, i
    carry_s = np.empty(m, dtype=np.float32)
    carry_i = np.empty(m, dtype=np.int64)
    last = top_s[k - 1]
    for b in range(w):
        row = tile[b]
        hb = bias[b]
        above = np.int32(0)
        for c in range(m):  # vectorised: could this base point enter any query's top k?
            above += np.int32((row[c] - hb) >= last[c])
        if above == 0:
            continue
        index = ids[b]
        for c in range(m):
            carry_s[c] = row[c] - hb
            carry_i[c] = index
        for j in range(k):  # the carried entry and slot j swap where the carried one is better
            slot_s, slot_i = top_s[j], top_i[j]
            for c in range(m):
                a, ai, v, vi = slot_s[c], slot_i[c], carry_s[c], carry_i[c]
                better = (v > a) | ((v == a) & (vi < ai))
                slot_s[c] = v if better else a
                slot_i[c] = vi if better else ai
                carry_s[c] = a if better else v
                carry_i[c] = ai if better else vi
    for c in range(m):
        for j in range(k):
            heap_s[c, j] = top_s[k - 1 - j, c]
            heap_i[c, j] = top_i[k - 1 - j, c]
        worst[c] = top_s[k - 1, c]


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


PARALLEL_MIN = 1 << 23  # multiply-adds a job must do on average for a search to spread over threads


def run_workers(worker: Callable[[], None], jobs: int, workers: int = 0, per_job: float | None = None) -> None:
    """Run ``worker`` on as many threads as torch has (or ``workers``), never more than ``jobs``,
    with torch single-threaded meanwhile; a worker's exception is raised here.

    ``per_job``: the multiply-adds of one job's products on average (tile entries times the
    dimension). Below `PARALLEL_MIN` (a few tenths of a millisecond of work) the jobs run on the
    calling thread: between such short jobs the threads would spend more time handing each other
    Python's lock than working side by side.
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
        if per_job is not None and per_job < PARALLEL_MIN:
            count = 1
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
        self.self_join_share = 1.0  # share of the n^2 pair scores the last `search_self` computed (the rest it proved unneeded)

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
            order, _ = locality_order(queries, self.l2, blocks, seeds)
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

        The base is cut into chunks of at most ``LOCALITY_GROUP`` points, and consecutive chunks into
        blocks (the unit of locking). Each chunk is first searched against itself; then, for every
        pair of chunks ``g > h``, one product ``X_g . X_h^T`` serves the queries of ``h`` (by
        columns) and those of ``g`` (by rows), which halves the matrix-product work. Consecutive
        row chunks that need the same columns share one product. A block's heaps are updated under
        its own lock; the heaps' total order makes the result independent of the order the pairs
        run in.

        With more than one block, the points are first put in `locality_order` and the chunks cut
        along its groups, so that a chunk holds close points and its own search gives every heap a
        tight ``k``-th best. For L2, each chunk is then a ball (its mean, and its farthest point's
        distance from it). A chunk pair whose balls lie farther apart than both chunks' largest
        ``k``-th distance (widened for float32 rounding) holds no pair that could enter a heap, so
        its product is skipped (`self_join_spans`); on clustered data that is most of them. Which
        pairs are skipped depends on the data alone, and the result is the same as without
        skipping. Heaps hold the original indices, so the result is the same as without the
        reordering.
        """
        import torch

        n, d = self.base.shape
        size = max(1, min(SELF_BLOCK, int(np.sqrt(blocks.query * blocks.base))))
        reorder = n > size and k > 1
        if reorder:
            order, groups = locality_order(self.base.numpy(), self.l2, blocks)
            base_np = np.ascontiguousarray(self.base.numpy()[order])
            base, bias = torch.from_numpy(base_np), self.bias[order]
        else:
            order, groups, base_np, base, bias = np.arange(n), np.zeros(n, np.int64), self.base.numpy(), self.base, self.bias
        chunks = chunk_edges(groups, min(size, LOCALITY_GROUP))
        first = block_edges(chunks, size)  # each block's first chunk
        count = len(first) - 1
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        indices = np.full((n, k), -1, dtype=np.int64)
        worst = np.full(n, -np.inf, dtype=np.float32)
        locks = [threading.Lock() for _ in range(count)]

        def product(r0: int, r1: int, c0: int, c1: int, buffer: Any) -> np.ndarray:
            tile = buffer[: (r1 - r0) * (c1 - c0)].view(r1 - r0, c1 - c0)
            torch.mm(base[r0:r1], base[c0:c1].T, out=tile)
            return tile.numpy()

        scan_own = scan_tile_sorted if k <= SORTED_MAX_K else scan_tile

        def own(b: int, buffer: Any) -> None:
            """Every chunk of block ``b`` against itself (each score offered to the column's heap)."""
            for c in range(first[b], first[b + 1]):
                a, z = chunks[c], chunks[c + 1]
                scan_own(product(a, z, a, z, buffer), bias[a:z], order[a:z], scores[a:z], indices[a:z], worst[a:z])

        def pair(task: np.ndarray, buffer: Any) -> None:
            """The products of one block pair's spans (rows ``r0:r1`` against columns ``c0:c1``), each
            score offered to both sides."""
            bi, bj = int(task[0, 0]), int(task[0, 1])
            with locks[bi], locks[bj] if bj != bi else contextlib.nullcontext():  # lower block first: no deadlock
                for _, _, r0, r1, c0, c1 in task.tolist():
                    scan_tile_both(
                        product(r0, r1, c0, c1, buffer), bias[r0:r1], order[r0:r1], bias[c0:c1], order[c0:c1],
                        scores[c0:c1], indices[c0:c1], worst[c0:c1], scores[r0:r1], indices[r0:r1], worst[r0:r1],
                    )

        def run(step: Callable[[Any, Any], None], tasks: list[Any], entries: float) -> None:
            next_task = task_source(tasks)

            def worker() -> None:
                buffer = torch.empty(size * size, dtype=torch.float32)
                with torch.inference_mode():
                    while (task := next_task()) is not None:
                        step(task, buffer)

            if tasks:
                run_workers(worker, len(tasks), blocks.workers, entries * d / len(tasks))

        own_entries = float(np.square(np.diff(chunks)).sum())
        run(own, list(range(count)), own_entries)
        if self.l2:
            centres, radii = chunk_balls(base_np, chunks)
            reach = chunk_reach(bias, worst, chunks, d)
        else:  # inner products: no ball bound, every pair is searched
            centres, radii, reach = np.zeros((chunks.size - 1, 1)), np.zeros(chunks.size - 1), np.full(chunks.size - 1, np.inf)
        spans = self_join_spans(centres, radii, reach, chunks, first)
        cuts = np.flatnonzero(np.any(np.diff(spans[:, :2], axis=0) != 0, axis=1)) + 1
        areas = float(((spans[:, 3] - spans[:, 2]) * (spans[:, 5] - spans[:, 4])).sum())
        run(pair, np.split(spans, cuts) if spans.shape[0] else [], areas)
        self.self_join_share = (own_entries + 2.0 * areas) / max(1.0, float(n) * n)
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
            run_workers(worker, len(starts), blocks.workers, float(blocks.query) * self.base.shape[0] * self.base.shape[1])
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
LOCALITY_SAMPLE = 8  # seeds are spread over a sample of this many points per seed


def locality_order(base: np.ndarray, l2: bool, blocks: Blocks, seeds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A permutation of the base's rows that keeps close points together, and each ordered row's group.

    ``n / LOCALITY_GROUP`` seeds (capped at ``LOCALITY_SEEDS``; ``seeds`` fixes the number instead)
    are spread by a farthest-first traversal of ``LOCALITY_SAMPLE`` evenly spaced points per seed
    (`farthest_first`), so that every cluster of the data gets a seed of its own; every point then
    joins its best-scoring seed with the engine's own score, and points are ordered by seed, by
    index within a seed. Returns ``(order, groups)``: ``groups[i]`` is the seed of row ``order[i]``
    (non-decreasing). No random choice is made: the order depends on the data alone. The cost is
    one top-1 search against the seeds, about ``2 / LOCALITY_GROUP`` of the self-join's product
    work, and the traversal, a hundredth of that.
    """
    n = base.shape[0]
    count = max(2, min(LOCALITY_SEEDS, n // LOCALITY_GROUP) if seeds is None else seeds)
    sample = np.linspace(0, n - 1, min(n, LOCALITY_SAMPLE * count)).astype(np.int64)
    rows = sample[farthest_first(np.ascontiguousarray(base[sample]), min(count, sample.size))]
    _, labels, _ = FlatEngine(np.ascontiguousarray(base[rows]), l2).assign(base, blocks)
    order = np.argsort(labels, kind="stable")
    return order, labels[order]


@njit(nogil=True, fastmath=FAST, cache=True)
def farthest_first(points: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows of ``points`` ``[s, d]`` spread by farthest-first traversal (Euclidean): row 0, then
    again and again the row farthest from those already taken (the first such row on ties)."""
    s, d = points.shape
    taken = np.empty(count, dtype=np.int64)
    nearest = np.full(s, np.inf, dtype=np.float32)
    j = 0
    for t in range(count):
        taken[t] = j
        far, nxt = np.float32(-1.0), 0
        for i in range(s):
            acc = np.float32(0.0)
            for c in range(d):
                diff = points[i, c] - points[j, c]
                acc += diff * diff
            if acc < nearest[i]:
                nearest[i] = acc
            if nearest[i] > far:
                far, nxt = nearest[i], i
        j = nxt
    return taken


def chunk_edges(groups: np.ndarray, most: int) -> np.ndarray:
    """Edges of runs of equal ``groups`` (non-decreasing), each run cut into chunks of at most ``most``."""
    starts = np.flatnonzero(np.diff(groups)) + 1
    bounds = np.concatenate([[0], starts, [groups.size]])
    cuts = [np.arange(a, b, most) for a, b in zip(bounds[:-1], bounds[1:])]
    return np.concatenate(cuts + [np.array([groups.size])]).astype(np.int64)


def block_edges(chunks: np.ndarray, size: int) -> np.ndarray:
    """Blocks of whole consecutive chunks (edges ``chunks``, each chunk at most ``size`` points), each as
    many chunks as fit in ``size`` points: each block's first chunk, then the number of chunks."""
    firsts = [0]
    for c in range(1, chunks.size - 1):
        if chunks[c + 1] - chunks[firsts[-1]] > size:
            firsts.append(c)
    firsts.append(chunks.size - 1)
    return np.array(firsts, dtype=np.int64)


def chunk_reach(bias: np.ndarray, worst: np.ndarray, chunks: np.ndarray, d: int) -> np.ndarray:
    """Each chunk's reach: its largest ``k``-th distance, from the heaps' ``k``-th best scores ``worst``
    (``inf`` where a heap is not full yet) and the rows' ``bias`` (``|x|^2 / 2``), widened by the
    float32 rounding of a score: a product of length ``d`` puts a squared distance off by at most
    ``d * 2^-24 * (|x|^2 + |y|^2)``, taken four times over."""
    norms = 2.0 * bias.astype(np.float64)
    kth = norms - 2.0 * worst.astype(np.float64)
    slack = 4.0 * d * 2.0**-24 * (norms + norms.max()) + 1e-12
    return np.sqrt(np.maximum.reduceat(kth + slack, chunks[:-1]))


@njit(nogil=True, cache=True)
def self_join_spans(centres: np.ndarray, radii: np.ndarray, reach: np.ndarray, chunks: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The products a self-join still needs after each chunk's own search: rows ``[p, 6]`` of
    ``(bi, bj, r0, r1, c0, c1)``, rows ``r0:r1`` (in block ``bj``) against columns ``c0:c1`` (in block
    ``bi <= bj``), by block pair, diagonal by diagonal (pairs of one diagonal rarely share a block,
    hence a lock).

    Chunk ``g`` (rows) needs chunk ``h < g`` (columns) unless their balls are farther apart than
    both reaches: ``|c_g - c_h| - r_g - r_h > max(reach_g, reach_h)``. Each row chunk's needed
    columns go as runs of consecutive chunks; a run that consecutive row chunks of a block all need
    is one product."""
    blocks, d = first.size - 1, centres.shape[1]
    out = np.empty((1024, 6), dtype=np.int64)
    p = 0
    # runs of needed column chunks [lo, hi]: those open since row chunk `start`, and the current row's
    open_lo, open_hi, start = np.empty_like(chunks), np.empty_like(chunks), np.empty_like(chunks)
    row_lo, row_hi = np.empty_like(chunks), np.empty_like(chunks)
    for gap in range(blocks):
        for bi in range(blocks - gap):
            bj = bi + gap
            opened = 0
            for g in range(first[bj], first[bj + 1] + 1):
                found = 0
                if g < first[bj + 1]:  # past the block's last row chunk, every open run closes
                    for h in range(first[bi], g if gap == 0 else first[bi + 1]):
                        acc = 0.0
                        for j in range(d):
                            t = centres[g, j] - centres[h, j]
                            acc += t * t
                        apart = np.sqrt(acc) - radii[g] - radii[h]
                        if apart <= reach[g] or apart <= reach[h]:
                            if found and row_hi[found - 1] == h - 1:
                                row_hi[found - 1] = h
                            else:
                                row_lo[found], row_hi[found] = h, h
                                found += 1
                kept = 0
                for r in range(opened):  # an open run goes on while the rows need exactly it
                    goes_on = False
                    for f in range(found):
                        goes_on |= row_lo[f] == open_lo[r] and row_hi[f] == open_hi[r]
                    if goes_on:
                        open_lo[kept], open_hi[kept], start[kept] = open_lo[r], open_hi[r], start[r]
                        kept += 1
                        continue
                    if p == out.shape[0]:
                        grown = np.empty((2 * p, 6), dtype=np.int64)
                        grown[:p] = out
                        out = grown
                    out[p, 0], out[p, 1], out[p, 2], out[p, 3] = bi, bj, chunks[start[r]], chunks[g]
                    out[p, 4], out[p, 5] = chunks[open_lo[r]], chunks[open_hi[r] + 1]
                    p += 1
                for f in range(found):
                    known = False
                    for r in range(kept):
                        known |= open_lo[r] == row_lo[f] and open_hi[r] == row_hi[f]
                    if not known:
                        open_lo[kept], open_hi[kept], start[kept] = row_lo[f], row_hi[f], g
                        kept += 1
                opened = kept
    return out[:p]


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract"})  # float64 sums in any order (vectorised)
def chunk_balls(points: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's mean ``[c, d]`` and its farthest point's distance from it ``[c]`` (float64), chunk
    ``i`` being rows ``edges[i]:edges[i + 1]`` of ``points``."""
    c, d = edges.size - 1, points.shape[1]
    centres = np.zeros((c, d))
    radii = np.zeros(c)
    for i in range(c):
        a, b = edges[i], edges[i + 1]
        for r in range(a, b):
            for j in range(d):
                centres[i, j] += points[r, j]
        centres[i] /= max(1, b - a)
        far = 0.0
        for r in range(a, b):
            acc = 0.0
            for j in range(d):
                t = points[r, j] - centres[i, j]
                acc += t * t
            far = max(far, acc)
        radii[i] = np.sqrt(far) * (1.0 + 1e-12)
    return centres, radii


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
