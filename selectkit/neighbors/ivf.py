"""Inverted-file (IVF) search on CPU through the layer's GEMM tiles.

The same method as FAISS's ``IndexIVFFlat`` (a k-means coarse quantizer partitions the base into
``nlist`` lists; each query scans the base points of its ``nprobe`` nearest lists), executed the
other way round: the queries are grouped by the lists they probe, and each list is searched against
all of its queries at once with the flat engine's matrix-product tiles and compiled top-k scan,
instead of one query at a time with per-vector distance code. Each (query, probe) pair keeps its
own ``k`` best, so lists can run on any thread in any order; the ``nprobe * k`` candidates of a
query are then merged by (score, index), which makes results independent of the thread schedule and
of the order the lists were probed in (equal scores go to the smaller index, as in the flat engine).
"""

from __future__ import annotations

import numpy as np

from selectkit.neighbors.flat import FlatEngine, run_workers, score_bias, sweep, task_source
from selectkit.neighbors.lloyd import lloyd
from selectkit.neighbors.memory import Blocks

MERGE_ROWS = 4096  # queries whose candidates are merged at once
TRAIN_ITERATIONS = 10  # Lloyd iterations of the coarse quantizer (FAISS trains IVF quantizers with 10 too)


class IVFEngine:
    """Inverted lists over a float32 base: `search` returns scores (largest first) and base indices."""

    def __init__(self, base: np.ndarray, l2: bool, nlist: int, nprobe: int, train_size: int, seed: int) -> None:
        """Train the coarse quantizer on a seeded sample of at most ``train_size`` points, then file
        every base point under its nearest centroid. ``base`` is float32 C-contiguous ``[n, d]``."""
        import torch

        from selectkit.neighbors.config import NeighborConfig
        from selectkit.neighbors.memory import plan_blocks

        n, d = base.shape
        self.nlist = nlist
        self.nprobe = min(nprobe, nlist)
        rng = np.random.default_rng([seed, 2])
        sample = base if n <= train_size else base[np.sort(rng.choice(n, train_size, replace=False))]
        start = sample[np.sort(rng.choice(sample.shape[0], nlist, replace=False))]
        # Centroids come from L2 k-means; points and queries go to lists by the search's own score
        # (largest inner product for 'ip'/'cosine'), as FAISS's IVF does with a flat quantizer.
        self.centroids, _ = lloyd(sample, start, TRAIN_ITERATIONS)
        self.quantizer = FlatEngine(self.centroids, l2=l2)
        self._quantizer_blocks = plan_blocks(nlist, self.nprobe, d, NeighborConfig())
        _, labels, counts = self.quantizer.assign(base, self._quantizer_blocks)
        self.order = np.argsort(labels, kind="stable")
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.lists = np.ascontiguousarray(base[self.order])
        self.list_bias = score_bias(self.lists, l2)
        self._lists_t = torch.from_numpy(self.lists)
        self.largest_list = int(counts.max())

    def search(self, queries: np.ndarray, k: int, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
        """``[nq, k]`` scores and base indices (``-1`` / ``-inf`` where the probed lists hold fewer than ``k``)."""
        import torch

        nq, probes = queries.shape[0], self.nprobe
        _, probe = self.quantizer.search(queries, probes, self._quantizer_blocks)
        pairs = np.argsort(probe.ravel(), kind="stable")  # (query, probe) slots grouped by list
        per_list = np.bincount(probe.ravel(), minlength=self.nlist)
        starts = np.concatenate([[0], np.cumsum(per_list)])
        slot_s = np.full((nq * probes, k), -np.inf, dtype=np.float32)
        slot_i = np.full((nq * probes, k), -1, dtype=np.int32 if self.order.size < 2**31 else np.int64)
        sizes = np.diff(self.offsets)
        next_list = task_source(np.argsort(-(per_list * sizes), kind="stable").tolist())  # largest lists first
        q_all = torch.from_numpy(queries)

        def worker() -> None:
            rows = min(blocks.query, max(1, int(per_list.max())))  # no list has more queries than this
            buffer = torch.empty(rows * min(blocks.base, max(1, int(sizes.max()))), dtype=torch.float32)
            with torch.inference_mode():
                while (ell := next_list()) is not None and per_list[ell] * sizes[ell] > 0:  # largest first: the rest are empty too
                    lo, hi = self.offsets[ell], self.offsets[ell + 1]
                    slots = pairs[starts[ell] : starts[ell + 1]]
                    base_t, bias = self._lists_t[lo:hi], self.list_bias[lo:hi]
                    for b in range(0, slots.size, blocks.query):
                        chunk = slots[b : b + blocks.query]
                        q = q_all[chunk // probes]
                        heap_s = np.full((chunk.size, k), -np.inf, dtype=np.float32)
                        heap_i = np.full((chunk.size, k), -1, dtype=np.int64)
                        sweep(base_t, bias, q, heap_s, heap_i, blocks.base, buffer)
                        found = heap_i >= 0
                        heap_i[found] = self.order[lo + heap_i[found]]
                        slot_s[chunk], slot_i[chunk] = heap_s, heap_i

        run_workers(worker, self.nlist, blocks.workers)
        # Each query's nprobe * k candidates, merged a block of queries at a time (bounded temporaries).
        cand_s = slot_s.reshape(nq, probes * k)
        cand_i = slot_i.reshape(nq, probes * k)
        scores = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        for start in range(0, nq, MERGE_ROWS):
            stop = min(start + MERGE_ROWS, nq)
            order = np.lexsort((cand_i[start:stop], -cand_s[start:stop]), axis=-1)[:, :k]  # ties to the smaller index
            scores[start:stop] = np.take_along_axis(cand_s[start:stop], order, 1)
            indices[start:stop] = np.take_along_axis(cand_i[start:stop], order, 1)
        return scores, indices
