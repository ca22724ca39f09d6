"""Leverage scores of a tall matrix read block by block: exact (Cholesky-QR) and sketched.

The matrix ``A`` (``n x d``) is never held whole: a `Blocks` reader hands out consecutive row blocks
(from a memory-mapped pool, a provider or an array) and every pass keeps only ``d x d`` state. The
leverage score of row ``i`` is ``a_i^T (A^T A)^+ a_i``, the squared norm of row ``i`` of an orthonormal
basis of the column space; the ridge score with ``lam > 0`` is ``a_i^T (A^T A + lam I)^{-1} a_i``.

Exact scores (`exact_scores`) use Cholesky-QR in its eigen form: pass 1 accumulates the Gram matrix
``G = A^T A`` in float64 (each sub-block converted on its own and multiplied by numpy's BLAS as a
symmetric rank-k update) and whitens it, ``W = V L^{-1/2}``; the
scores are the squared row norms of ``A W``. Their accuracy falls with the condition number
``kappa`` of ``A`` (the Gram matrix squares it). The float64 Gram matrix's own rounding is bounded
(`one_pass_error`), so the error of one float32 scoring pass is known from ``kappa``, which picks
the path:

* estimated error (`one_pass_error`) at most `ONE_PASS_TOL` (``kappa`` up to about 200): one more
  pass gives the scores (float32);
* otherwise (larger ``kappa``, or rank-deficient):
  Cholesky-QR2 in float64: a second pass accumulates the Gram matrix of ``A W`` (nearly the
  identity), whose whitening corrects ``W``, and a third gives the scores, each
  block converted on its own (never the whole matrix). Directions whose singular value is below
  ``rtol`` times the largest are dropped: the scores are those of the numerical rank ``r`` (they
  sum to ``r``). All-zero features have rank 0: the scores are then all zero and the caller falls
  back to uniform.

Every pass cuts each block into sub-blocks of `SUB_BYTES` that run on ``torch.get_num_threads()``
worker threads. The workers' products are numpy's (its BLAS held at one thread meanwhile through
threadpoolctl, BLAS only, restored afterwards); torch's thread settings are never changed, and the
workers run no torch kernels: a torch matrix product on a thread other than the one that set torch's
count starts its own OpenMP team, which both oversubscribes the cores and leaves the process with more
OpenMP threads than cores (GNU OpenMP then shortens every later spin-wait: the run's later training
steps were up to 40x faster under load after leverage than after another selector; docs/benchmarks.md).
Results are combined in sub-block order, so the scores do not depend on the thread count.

Sketched scores (`sketched_scores`) follow the fast approximation of leverage scores by random
projection: one pass forms a CountSketch ``S A`` (``sketch_size`` rows, each row of ``A`` added with a
random sign to one random row of the sketch) and, independently, a second sketch ``S' A``; the
whitening ``W`` of ``S A`` stands in for the exact one, and a Gaussian projection ``P`` (``projection``
columns) of ``W`` makes the last pass cost ``n d p`` instead of ``n d^2``. The singular values of
``S' A W`` estimate how far ``W`` is from whitening ``A``; with the projection's spread this gives the
reported error estimate (see `sketched_scores`).

Over several ranks (`ShardBlocks`), each rank reads its shard in the pool's logical blocks; every sum
over rows is formed per logical block and the blocks' partials are added along the fixed tree of
`selectkit.distributed.Comm.block_sum`, so the whitening, and every score, is the same at every world
size. A plain `Blocks` is one block held whole.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

#: Relative error (per row) that the one-pass route, scores straight from the first Gram matrix, must
#: stay within by its estimate (`one_pass_error`); otherwise Cholesky-QR2 runs.
ONE_PASS_TOL = 1.0e-5
#: Bytes of one block of rows (as float32) read at a time.
BLOCK_BYTES = 64 << 20
#: Bytes (as float32) of the sub-blocks a block is cut into, which run on ``torch.get_num_threads()``
#: worker threads: small enough for a sub-block and its products to stay in the core's cache.
SUB_BYTES = 1 << 20
#: Relative error (per row) of one float32 scoring pass: ``SCORE_ERROR[0] + SCORE_ERROR[1] * kappa``
#: (measured with a float64 Gram matrix over 1M x 64 rows: 3e-7 at ``kappa`` 1, 2.1e-6 at 100,
#: 1.8e-5 at 1000; 5.8e-7 at ``kappa`` 10 and 1.07e-5 at 279 on 50,000 x 12, the largest per kappa).
SCORE_ERROR = (5.0e-7, 4.0e-8)


class NonFiniteError(ValueError):
    """The matrix holds NaN or infinite values."""


@dataclass
class Blocks:
    """Consecutive row blocks of an ``n x d`` matrix, read on demand.

    Args:
        read: ``(start, stop) -> array [stop - start, d]`` of any real dtype (a slice of a memory map,
            a provider called for those rows, ...).
        n: number of rows.
        d: number of columns.
        row_scale: optional ``[n]`` factors each row is multiplied by (``sqrt`` of row weights).
        block_rows: rows per block; default from `BLOCK_BYTES`.
    """

    read: Callable[[int, int], np.ndarray]
    n: int
    d: int
    row_scale: np.ndarray | None = None
    block_rows: int | None = None

    @classmethod
    def of(cls, a: np.ndarray, row_scale: np.ndarray | None = None, block_rows: int | None = None) -> "Blocks":
        """Blocks of an array already at hand (in memory or an ``np.memmap``)."""
        a2 = a.reshape(a.shape[0], -1)
        return cls(lambda s, e: a2[s:e], int(a2.shape[0]), int(a2.shape[1]), row_scale, block_rows)

    @property
    def rows(self) -> int:
        """Rows per block."""
        if self.block_rows:
            return int(self.block_rows)
        return max(1, BLOCK_BYTES // max(1, 4 * self.d))

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        return self.iterate(torch.float32)

    def iterate(self, dtype: torch.dtype = torch.float32) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, block)`` pairs, each block a C-contiguous tensor of ``dtype``, rows scaled."""
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        for start in range(0, self.n, self.rows):
            stop = min(self.n, start + self.rows)
            block = np.ascontiguousarray(np.asarray(self.read(start, stop)).reshape(stop - start, -1), dtype=np_dtype)
            if block.shape != (stop - start, self.d):
                raise ValueError(f"block {start}:{stop} has shape {block.shape}, expected {(stop - start, self.d)}")
            if self.row_scale is not None:
                block = block * np.asarray(self.row_scale[start:stop], dtype=np_dtype)[:, None]
            with warnings.catch_warnings():
                # a read-only memory map: blocks are only read (scaling makes a new array)
                warnings.simplefilter("ignore", UserWarning)
                t = torch.from_numpy(block)
            yield start, t


@dataclass
class ShardBlocks:
    """This rank's rows of an ``n x d`` matrix spread over ranks, cut in the pool's logical blocks.

    Every pass that sums over rows (`gram`, the Cholesky-QR2 refinement, the ridge trace, the sketch)
    forms one partial per logical block from that block's rows alone and adds the partials with
    `selectkit.distributed.Comm.block_sum`, so the sums, and everything computed from them, are bit
    for bit the same at every world size. Per-row results (scores, coordinates) stay on the rank.

    Args:
        parts: ``(block id, first pool position, Blocks of the block's rows)`` for this rank's blocks,
            in block order.
        n: rows of the whole matrix (every rank).
        d: columns (agreed over the ranks: a rank without rows knows it too).
        comm: the ranks (`selectkit.distributed.Comm`).
        layout: this rank's `selectkit.distributed.ShardLayout` of the ``n`` rows.
        read_rows: rows the parts read at a time (`Blocks.rows`; a read never crosses a logical block).
    """

    parts: list[tuple[int, int, "Blocks"]]
    n: int
    d: int
    comm: Any
    layout: Any
    read_rows: int

    @classmethod
    def whole(cls, blocks: "Blocks") -> "ShardBlocks":
        """A matrix held whole by this process, as one logical block (the sums are those of ``blocks``)."""
        from selectkit.distributed import Comm, ShardLayout

        n = max(1, blocks.n)
        return cls([(0, 0, blocks)], blocks.n, blocks.d, Comm.alone(), ShardLayout(n, block_rows=n), blocks.rows)

    @property
    def n_local(self) -> int:
        """Rows on this rank."""
        return sum(b.n for _, _, b in self.parts)

    def total(self, partial: Callable[["Blocks", int], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        """The float64 sum over the pool's blocks of ``partial(block rows, first position)`` (every rank)."""
        by_id = {b: (start, blk) for b, start, blk in self.parts}
        return self.comm.block_sum(lambda b: partial(by_id[b][1], by_id[b][0]), self.layout, shape=shape)

    def rows(self, per_block: Callable[["Blocks", int], np.ndarray], width: tuple[int, ...] = (), dtype: Any = np.float64) -> np.ndarray:
        """``per_block(block rows, first position)`` for this rank's blocks, concatenated in row order
        (``[0, *width]`` of ``dtype`` on a rank without rows)."""
        out = [per_block(blk, start) for _, start, blk in self.parts]
        return np.concatenate(out) if out else np.zeros((0, *width), dtype=dtype)


def as_shard(blocks: "Blocks | ShardBlocks") -> ShardBlocks:
    """``blocks`` as a `ShardBlocks` (a plain `Blocks` is one block held whole)."""
    return blocks if isinstance(blocks, ShardBlocks) else ShardBlocks.whole(blocks)


@dataclass
class Scores:
    """Leverage (or ridge leverage) scores with how they were computed.

    Attributes:
        values: float64 ``[n]`` scores.
        rank: numerical rank used (``d`` when full rank).
        method: ``cholesky_qr32`` | ``cholesky_qr2_64`` | ``sketch``.
        gram: the (exact or sketched) Gram matrix ``A^T A`` in float64, ``d x d``.
        colsum: column sums of ``A`` (float64 ``[d]``), for centring.
        meta: JSON-friendly facts (condition estimate, passes, error estimate, seconds).
    """

    values: np.ndarray
    rank: int
    method: str
    gram: np.ndarray
    colsum: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _check_finite(g: np.ndarray) -> None:
    if not np.all(np.isfinite(g)):
        raise NonFiniteError("the features hold NaN or infinite values")


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(count: int) -> ThreadPoolExecutor:
    """This process's ``count`` worker threads, started on first use (keyed by process id: a forked
    child starts its own)."""
    key = (os.getpid(), count)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(count, thread_name_prefix="selectkit-leverage")
        return _pools[key]


def _sub_rows(d: int) -> int:
    """Rows of a sub-block: `SUB_BYTES` as float32, a multiple of 256."""
    return max(1, SUB_BYTES // (4 * max(1, d)) // 256) * 256


def _sub_blocks(rows: int, d: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the sub-blocks of a block of ``rows`` rows (`_sub_rows` each)."""
    size = _sub_rows(d)
    return [(s, min(rows, s + size)) for s in range(0, rows, size)]


def _each_sub_block(
    blocks: Blocks, dtype: torch.dtype, work: Callable[[int, int, torch.Tensor], Any], combine: Callable[[Any], None] | None = None
) -> None:
    """``work(index, first_row, sub_block)`` for every sub-block; ``combine(result)`` on the calling
    thread, in sub-block order, as each block's results come in.

    The sub-blocks of a block run on ``torch.get_num_threads()`` threads; ``work`` computes with
    numpy, whose BLAS is held at one thread meanwhile: one product per sub-block and no thread
    synchronisation inside the kernels, which a loaded machine punishes. Torch's settings are left
    alone (``work`` must not run torch kernels; see the module docstring). The next block is read
    while the current one is worked on; blocks are read in order, by the calling thread only.
    """
    from selectkit.neighbors.lloyd import single_threaded_blas

    threads = max(1, torch.get_num_threads())
    pool = _pool(threads) if threads > 1 else None
    with single_threaded_blas():
        it = blocks.iterate(dtype)
        item = next(it, None)
        index = 0
        while item is not None:
            start, block = item
            jobs = [(index + j, start + s, block[s:e]) for j, (s, e) in enumerate(_sub_blocks(block.shape[0], blocks.d))]
            index += len(jobs)
            if pool is None:
                results = [work(*job) for job in jobs]
                item = next(it, None)
            else:
                futures = [pool.submit(work, *job) for job in jobs]
                try:
                    item = next(it, None)
                finally:
                    results = [f.result() for f in futures]
            if combine is not None:
                for r in results:
                    combine(r)


def gram(blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
    """``(A^T A, column sums)`` in float64, `NonFiniteError` on NaN/inf.

    Each worker converts its sub-block to float64 in a reused buffer and forms ``X^T X`` with numpy's
    BLAS (a symmetric rank-k update: half the products of a general one); 1M x 64 takes 0.09 s here,
    no longer than float32 products of 256-row chunks summed in float64.
    """
    d = blocks.d
    local = threading.local()

    def work(_index: int, _start: int, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        rows = x.shape[0]
        buf = getattr(local, "buf", None)
        if buf is None or buf.shape[0] < rows:
            buf = local.buf = np.empty((rows, d), dtype=np.float64)
        x64 = buf[:rows]
        x64[...] = x.numpy()
        return x64.T @ x64, x64.sum(0)

    g = np.zeros((d, d), dtype=np.float64)
    s = np.zeros(d, dtype=np.float64)

    def combine(result: tuple[np.ndarray, np.ndarray]) -> None:
        np.add(g, result[0], out=g)
        np.add(s, result[1], out=s)

    _each_sub_block(blocks, torch.float32, work, combine)
    _check_finite(g)
    _check_finite(s)
    return g, s


def gram_total(blocks: "Blocks | ShardBlocks") -> tuple[np.ndarray, np.ndarray]:
    """`gram` of the whole matrix: each logical block's ``(A_b^T A_b, column sums)`` by `gram`, added
    in block order (`ShardBlocks.total`). `NonFiniteError` on every rank when any block holds NaN/inf."""
    sb = as_shard(blocks)
    d = sb.d

    def partial(b: Blocks, _start: int) -> np.ndarray:
        try:
            g, s = gram(b)
        except NonFiniteError:
            return np.full(d * d + d, np.nan)  # poisons the sum, so every rank raises below
        return np.concatenate([g.reshape(-1), s])

    out = sb.total(partial, (d * d + d,))
    _check_finite(out)
    return out[: d * d].reshape(d, d), out[d * d :]


def square_sum(blocks: "Blocks | ShardBlocks") -> float:
    """The sum of squares of every entry (float64, in block order), e.g. ``trace(A^T A)``."""

    def partial(b: Blocks, _start: int) -> np.ndarray:
        total = 0.0
        for _, x in b:
            total += float((x.double() ** 2).sum())
        return np.array([total])

    return float(as_shard(blocks).total(partial, (1,))[0])


def whitening(g: np.ndarray, ridge: float = 0.0, rtol: float = 1e-6) -> tuple[np.ndarray, int, float]:
    """``(W, rank, kappa)``: ``W`` (``d x r``) with ``W^T (G + ridge I) W = I`` on the kept directions.

    Without a ridge the Gram matrix is first scaled to unit diagonal (Jacobi scaling: the rounding
    error of Cholesky-QR depends on the condition of the column-scaled matrix, so ``kappa`` is read
    there); all-zero columns are dropped. Directions with eigenvalue at most ``rtol**2`` times the
    largest (singular value below ``rtol`` times the largest) are dropped too. ``kappa`` is the
    condition number on the kept directions, ``inf`` when any were dropped, ``nan`` for rank 0.
    """
    g = 0.5 * (g + g.T)
    d = g.shape[0]
    if ridge:
        lam, vec = eigh(g + ridge * np.eye(d))
        keep = lam > (rtol**2) * float(lam[-1])
        kappa = math.sqrt(float(lam[-1]) / float(lam[keep][0])) if keep.all() else float("inf")
        return vec[:, keep] / np.sqrt(lam[keep]), int(keep.sum()), kappa
    diag = np.diag(g).copy()
    live = diag > 0
    if not live.any():
        return np.zeros((d, 0)), 0, float("nan")
    scale = np.where(live, 1.0 / np.sqrt(np.where(live, diag, 1.0)), 0.0)
    lam, vec = eigh(g * scale[:, None] * scale[None, :])
    keep = lam > (rtol**2) * float(lam[-1])
    rank = int(keep.sum())
    kappa = math.sqrt(float(lam[-1]) / float(lam[keep][0])) if rank == d else float("inf")
    return scale[:, None] * vec[:, keep] / np.sqrt(lam[keep]), rank, kappa


def eigh(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the symmetric part of ``m``, in float64 (torch's
    LAPACK, which stays fast when other processes load the machine)."""
    lam, vec = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(0.5 * (m + m.T), dtype=np.float64)))
    return lam.numpy(), vec.numpy()


def _row_norms(blocks: Blocks, m: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """Squared row norms of ``A m``, block by block (one product per sub-block into a reused buffer;
    the norms summed in the product's precision)."""
    out = np.empty(blocks.n, dtype=np.float64)
    mt = np.ascontiguousarray(m, dtype=np.float32 if dtype == torch.float32 else np.float64)
    local = threading.local()

    def work(_index: int, start: int, x: torch.Tensor) -> None:
        rows = x.shape[0]
        buf = getattr(local, "buf", None)
        if buf is None or buf.shape[0] < rows:
            buf = local.buf = np.empty((rows, mt.shape[1]), dtype=mt.dtype)
            local.norms = np.empty(rows, dtype=mt.dtype)
        q = np.matmul(x.numpy(), mt, out=buf[:rows])
        out[start : start + rows] = np.einsum("ij,ij->i", q, q, out=local.norms[:rows])

    _each_sub_block(blocks, dtype, work)
    return out


def _refine(blocks: ShardBlocks, w: np.ndarray, ridge: float, dtype: torch.dtype) -> np.ndarray:
    """One Cholesky-QR2 step: ``W`` times the whitening of the Gram matrix of ``A W`` (+ ridge part),
    that Gram matrix summed in block order."""
    r = w.shape[1]
    g2 = blocks.total(lambda b, _start: _projected_gram(b, w, dtype).reshape(-1), (r * r,)).reshape(r, r)
    if ridge:
        g2 += ridge * (w.T @ w)
    _check_finite(g2)
    w2, _, _ = whitening(g2, 0.0, rtol=0.0)
    return w @ w2


def _projected_gram(blocks: Blocks, w: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    """``(A W)^T (A W)`` of the rows of ``blocks``, in float64 (sub-block products in ``dtype``)."""
    wt = np.ascontiguousarray(w, dtype=np.float32 if dtype == torch.float32 else np.float64)
    local = threading.local()

    def work(_index: int, _start: int, x: torch.Tensor) -> np.ndarray:
        rows = x.shape[0]
        buf = getattr(local, "buf", None)
        if buf is None or buf.shape[0] < rows:
            buf = local.buf = np.empty((rows, wt.shape[1]), dtype=wt.dtype)
        q = np.matmul(x.numpy(), wt, out=buf[:rows])
        return (q.T @ q).astype(np.float64, copy=False)

    g2 = np.zeros((w.shape[1], w.shape[1]), dtype=np.float64)
    _each_sub_block(blocks, dtype, work, lambda r: np.add(g2, r, out=g2))
    return g2


def one_pass_error(kappa: float, blocks: "Blocks | ShardBlocks") -> float:
    """Estimated largest relative error of scores from the float64 Gram matrix in one float32 pass:
    the pass's own rounding (`SCORE_ERROR`, measured) plus a bound on the Gram matrix's rounding.

    Each sub-block's product sums at most `_sub_rows` terms and the sub-blocks' sum (within a logical
    block, then along the tree over the blocks) adds at most one term per sub-block, so every entry of
    the (Jacobi-scaled) Gram matrix is off by at most ``(rows + count) 2^-53``; ``d`` times that
    bounds the spectral norm of the error ``E``, and a row's score is off by at most
    ``||W^T E W|| <= ||E|| kappa^2`` relative. The same on every rank (global sizes only).
    """
    sb = as_shard(blocks)
    d, n, logical = sb.d, sb.n, sb.layout.block_rows
    sub, rows = _sub_rows(d), min(sb.read_rows, logical)

    def subs(count_rows: int) -> int:  # sub-blocks of a logical block of ``count_rows`` rows
        full, rest = divmod(count_rows, rows)
        return full * -(-min(rows, count_rows) // sub) + -(-rest // sub)

    whole, tail = divmod(n, logical)
    count = whole * subs(logical) + subs(tail)
    gram_error = d * (min(n, rows, sub) + count) * 2.0**-53 * kappa**2
    return gram_error + SCORE_ERROR[0] + SCORE_ERROR[1] * kappa


def exact_scores(blocks: "Blocks | ShardBlocks", *, ridge: float = 0.0, rtol: float = 1e-6) -> Scores:
    """Exact leverage (``ridge = 0``) or ridge leverage scores by blocked Cholesky-QR (module docstring).

    ``ridge`` is the absolute ``lam`` of ``A^T A + lam I``. Raises `NonFiniteError` on NaN/inf. Over
    a `ShardBlocks`, ``values`` are this rank's rows' scores; the Gram matrix is the whole pool's.
    """
    t0 = time.perf_counter()
    sb = as_shard(blocks)
    g, colsum = gram_total(sb)
    w, rank, kappa = whitening(g, ridge, rtol)
    passes = 1
    estimate = None
    if rank == 0:
        values = np.zeros(sb.n_local)
        method = "cholesky_qr32"
    else:
        if math.isfinite(kappa):
            estimate = one_pass_error(kappa, sb)
        if estimate is not None and estimate <= ONE_PASS_TOL:
            method, dtype = "cholesky_qr32", torch.float32
        else:
            method, dtype = "cholesky_qr2_64", torch.float64
            w = _refine(sb, w, ridge, dtype)
            passes += 1
        values = sb.rows(lambda b, _start: _row_norms(b, w, dtype))
        passes += 1
    meta = {"method": method, "rank": rank, "kappa": _num(kappa), "passes": passes, "seconds": round(time.perf_counter() - t0, 6)}
    if estimate is not None:
        meta["one_pass_error_estimate"] = float(f"{estimate:.3g}")
    return Scores(values, rank, method, g, colsum, meta)


@dataclass
class Sketch:
    """A sketched whitening and its error estimate, before the scoring pass (`sketch`).

    Attributes:
        m: ``d x r`` (or ``d x p`` with a projection) matrix whose product with a row gives its score
            as a squared norm; None for rank 0.
        rank: numerical rank of the sketch.
        gram: the sketched Gram matrix ``(S A)^T (S A)`` in float64.
        colsum: column sums of ``A`` (float64 ``[d]``).
        estimate: the per-row relative error estimate of the scores (``rel_error_estimate``).
        meta: JSON-friendly facts (as `Scores.meta`).
        started: ``time.perf_counter()`` when the sketch pass began.
    """

    m: np.ndarray | None
    rank: int
    gram: np.ndarray
    colsum: np.ndarray
    estimate: float
    meta: dict[str, Any]
    started: float

    def scores(self, blocks: "Blocks | ShardBlocks") -> Scores:
        """The sketched scores of every row of ``blocks`` (this rank's, one more pass, the second)."""
        sb = as_shard(blocks)
        values = np.zeros(sb.n_local) if self.m is None else sb.rows(lambda b, _start: _row_norms(b, self.m, torch.float32))
        meta = {**self.meta, "passes": 2, "seconds": round(time.perf_counter() - self.started, 6)}
        return Scores(values, self.rank, "sketch", self.gram, self.colsum, meta)


def sketch(
    blocks: "Blocks | ShardBlocks",
    *,
    sketch_size: int,
    projection: int | None,
    rng: np.random.Generator | None = None,
    key: Any = None,
    ridge: float = 0.0,
    rtol: float = 1e-6,
) -> Sketch:
    """The sketch pass of `sketched_scores`: the whitening from a CountSketch of ``sketch_size``
    rows and its error estimate, so a caller can judge the estimate before the scoring pass.

    A row's bucket and sign in each of the two sketches are keyed by its pool position (``key``, a
    `selectkit.distributed` key; or one drawn from ``rng``), and each logical block's sketch is added
    in block order, so the sketch is the same at every world size. The projection comes from the key.
    """
    from selectkit.distributed import key_generator, subkey
    from selectkit.distributed.keyed import keyed_bits

    t0 = time.perf_counter()
    sh = as_shard(blocks)
    d, k = sh.d, int(sketch_size)
    if key is None:
        if rng is None:
            raise ValueError("sketch needs a key or an rng")
        key = tuple(int(x) for x in rng.integers(0, 2**62, size=2))

    def partial(b: Blocks, start: int) -> np.ndarray:
        sa = torch.zeros((k, d), dtype=torch.float32)
        sb = torch.zeros((k, d), dtype=torch.float32)
        colsum = np.zeros(d, dtype=np.float64)
        for first, x in b.iterate(torch.float32):
            positions = np.arange(start + first, start + first + x.shape[0], dtype=np.int64)
            for j, target in enumerate((sa, sb)):
                bits = keyed_bits(subkey(key, j), positions)
                bucket = (bits % np.uint64(k)).astype(np.int64)
                sign = ((bits >> np.uint64(63)).astype(np.float32)) * 2 - 1
                target += _count_sketch(bucket, sign, k) @ x
            colsum += x.sum(0).double().numpy()
        return np.concatenate([sa.numpy().reshape(-1), sb.numpy().reshape(-1), colsum])

    out = sh.total(partial, (2 * k * d + d,))
    sa64 = torch.from_numpy(out[: k * d].reshape(k, d))
    sb64 = torch.from_numpy(out[k * d : 2 * k * d].reshape(k, d))
    colsum = out[2 * k * d :]
    g = (sa64.T @ sa64).numpy()
    _check_finite(g)
    _check_finite(colsum)
    w, rank, kappa = whitening(g, ridge, rtol)
    m = None
    eps = 0.0
    if rank:
        t = sb64 @ torch.from_numpy(np.ascontiguousarray(w))
        gt = (t.T @ t).numpy() + (ridge * (w.T @ w) if ridge else 0.0)
        sv = np.sqrt(np.clip(eigh(gt)[0], 1e-300, None))
        eps = float(np.max(np.abs(np.log(sv))))
        m = w
        if projection is not None and projection < w.shape[1]:
            m = w @ (key_generator(subkey(key, 2)).standard_normal((w.shape[1], int(projection))) / math.sqrt(projection))
    p = projection if projection is not None and projection < max(rank, 1) else None
    estimate = math.expm1(2 * eps) + _projection_spread(p)
    meta = {
        "method": "sketch",
        "rank": rank,
        "kappa": _num(kappa),
        "sketch_size": k,
        "projection": p,
        "sketch_distortion": round(eps, 6),
        "rel_error_estimate": round(estimate, 6),
        "passes": 1,
        "seconds": round(time.perf_counter() - t0, 6),
    }
    return Sketch(m, rank, g, colsum, estimate, meta, t0)


def sketch_error_floor(d: int, sketch_size: int, projection: int | None = None) -> float:
    """The least ``rel_error_estimate`` a sketch of ``sketch_size`` rows of a ``d``-column matrix can
    be expected to state: ``exp(2 sqrt(d / k)) - 1`` (plus the projection's term).

    A random ``k``-row embedding of a ``d``-dimensional subspace distorts it by about ``sqrt(d / k)``
    at least (the edge of the Marchenko-Pastur law); the estimate reads the distortion through two
    independent sketches, and measured ``eps`` came out 1.3 to 1.6 times ``sqrt(d / k)`` (Gaussian
    rows from 16 to 256 columns, Fashion-MNIST's 784 pixels). ``method: auto`` skips the sketch pass
    when even this floor is above its tolerance.
    """
    p = projection if projection is not None and projection < d else None
    return math.expm1(2.0 * math.sqrt(d / max(1, int(sketch_size)))) + _projection_spread(p)


def _projection_spread(p: int | None) -> float:
    """Three standard deviations of a squared norm under a ``p``-column Gaussian projection (0: none)."""
    return 3 * math.sqrt(2.0 / p) if p else 0.0


def sketched_scores(blocks: "Blocks | ShardBlocks", **options: Any) -> Scores:
    """Approximate leverage scores from a CountSketch (module docstring): `sketch` with ``options``
    (``sketch_size``, ``projection``, ``rng`` or ``key``, ``ridge``, ``rtol``), then its scoring pass.

    ``projection`` columns of a Gaussian map shrink the scoring pass (None: no projection, the scores
    are those of ``A W`` exactly). The reported ``rel_error_estimate`` is
    ``exp(2 eps) - 1 + 3 sqrt(2 / p)`` where ``eps`` is the largest ``|log sigma|`` over the singular
    values of the second sketch times ``W`` (how far ``A W`` is from orthonormal, read through an
    independent sketch, so it also counts that sketch's own distortion) and ``3 sqrt(2 / p)`` three
    standard deviations of a squared norm under a ``p``-column Gaussian projection: a per-row bound that
    the tests check holds for at least 99% of rows.
    """
    return sketch(blocks, **options).scores(blocks)


def _count_sketch(bucket: np.ndarray, sign: np.ndarray, k: int) -> torch.Tensor:
    """The ``k x rows`` CountSketch matrix (one signed 1 per column) as a CSR tensor."""
    order = np.argsort(bucket, kind="stable")
    crow = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=k), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # beta-state notice of sparse CSR tensors
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(order.astype(np.int64)), torch.from_numpy(sign[order]),
            size=(k, bucket.shape[0]), check_invariants=False,
        )


def _num(x: float) -> float | str:
    """A float for JSON (``inf``/``nan`` as strings)."""
    return float(x) if math.isfinite(x) else str(x)
