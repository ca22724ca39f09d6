"""Exact search with a bfloat16 first pass: fast products, an error bound, float32 rescoring.

On CPUs with bfloat16 matrix instructions (``avx512_bf16``, AMX) a bfloat16 product runs 4-6 times
faster than a float32 one, and for a wide search the products are most of the work. The first pass
scans bfloat16 tiles (inputs rounded to bfloat16, products accumulated in float32, the result
rounded to bfloat16 once) exactly as the float32 engine scans its tiles, but keeps a wider heap of
``K = 2k + 16`` candidates per query. The candidates are then scored again with the scores the layer
returns (`selectkit.neighbors.rescore`: float64 sums of the float32 inputs, rounded to float32), and
the best ``k`` by (returned score, index) kept. The result is certified per query: every point outside
the heap scored at most ``h`` (the heap's worst approximate score), so its true score is at most
``h + bound``; when even the returned score that allows is strictly worse than the ``k``-th kept one,
no point outside the heap can be among the best ``k``, ties included. A query whose certificate fails
is searched again in float32, so the answer is the exact one in every case and only the time depends
on the data.

The bound on ``|approx - exact|`` for a query ``q`` and any base row ``x`` (``~`` marks a bfloat16
rounding, ``u = 2^-8`` bfloat16's unit roundoff, ``v`` the approximate dot product)::

    |q~ . x~ - q . x| <= |q~| max|x - x~| + |q - q~| max|x|          (the inputs' rounding)
    float32 accumulation                <= 1.01 d 2^-24 |q~| max|x~|
    the output's rounding to bfloat16   <= u |v|, and |v| <= |h| + max bias for any point outside the heap

Each term is measured from the data (the residual norms of the rounding), so the bound adapts to it;
the comparison with the ``k``-th returned score allows for the float64 sum and the float32 rounding of
a returned score (and, for L2, for the float32 rounding of the centring). The model of the
product (float32 accumulation, one rounding at the end) is checked once per process on a probe
product (`bf16_products_ok`): a backend that does otherwise is not used.

For L2 the pass works on rows centred on the base's mean (distances do not change, the products and
their rounding shrink). Data whose scores crowd the ``k``-th best more closely than bfloat16 can
resolve fails many certificates; the engine then runs the rest of that search in float32
(`selectkit.neighbors.flat.MAX_FAILED`).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
from numba import njit

from selectkit.neighbors.flat import scan_tile, sweep
from selectkit.neighbors.rescore import pair_score_rows

U_BF16 = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
U_F32 = 2.0**-24
SLACK = 1.01  # rounding of the bound's own terms, and the relative term's 1 / (1 - u)
MIN_DIM = 32  # 'auto' runs the bfloat16 pass from this width up (narrower, the scan and certificate failures eat the gain)
MIN_BASE = 16_384  # 'auto' runs it on bases of at least this many points (smaller ones: the rescoring costs more than the products save)
PROBE_ROWS = 384


def heap_width(k: int) -> int:
    """Candidates the first pass keeps per query for a search of ``k``."""
    return 2 * k + 16


@functools.lru_cache(maxsize=1)
def fast_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (``avx512_bf16`` or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


_probe_lock = threading.Lock()
_probe: list[bool] = []


def bf16_products_ok() -> bool:
    """Whether torch's bfloat16 products on this machine stay within the error model the certificate uses.

    A probe product of unit-length rows (half of them near-duplicates, so large and small values
    both occur) is compared with the float64 product of the same bfloat16 inputs; every entry must
    lie within float32 accumulation plus one bfloat16 rounding. Run once per process.
    """
    with _probe_lock:
        if not _probe:
            _probe.append(_run_probe())
        return _probe[0]


def _run_probe() -> bool:
    import torch

    rng = np.random.default_rng(0)
    d = 256
    a = rng.standard_normal((PROBE_ROWS, d)).astype(np.float32)
    b = a[: PROBE_ROWS // 2] + 0.05 * rng.standard_normal((PROBE_ROWS // 2, d)).astype(np.float32)
    b = np.concatenate([b, rng.standard_normal((PROBE_ROWS // 2, d)).astype(np.float32)])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ta, tb = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
    try:
        with torch.inference_mode():
            out = torch.mm(ta, tb.T).double().numpy()
    except RuntimeError:
        return False
    ref = ta.double().numpy() @ tb.double().numpy().T
    na, nb = np.linalg.norm(ta.double().numpy(), axis=1), np.linalg.norm(tb.double().numpy(), axis=1)
    allowed = U_BF16 * np.abs(out) + SLACK * d * U_F32 * (na[:, None] * nb[None, :]) * (1 + U_BF16)
    return bool(np.all(np.abs(out - ref) <= allowed))


class Bf16Base:
    """The bfloat16 copy of a float32 base and the constants of its error bound.

    With ``l2`` the copy is of the centred rows ``x - mu`` (``mu`` the base's mean): squared distances
    do not change, and the products, whose bfloat16 rounding is relative to their size, get smaller,
    so far fewer certificates fail on data away from the origin (raw pixels, say). ``bias`` then
    holds ``|x - mu|^2 / 2``, the centred rows' own bias.
    """

    def __init__(self, base: np.ndarray, l2: bool) -> None:
        import torch

        from selectkit.neighbors.flat import each_row_block

        n, d = base.shape
        self.d = d
        self.l2 = l2
        self.center = (base.mean(axis=0, dtype=np.float64).astype(np.float32) if l2 else np.zeros(d, dtype=np.float32))
        self.bias = np.zeros(n, dtype=np.float32)
        bits = np.empty((n, d), dtype=np.uint16)
        step = 16_384
        stats = np.zeros((-(-n // step), 3), dtype=np.float64)

        def work(i: int, j: int) -> None:
            stats[i // step] = _to_bf16(base[i:j], self.center, bits[i:j], self.bias[i:j], l2)

        each_row_block(n, step, work)
        self.rows = torch.from_numpy(bits).view(torch.bfloat16)
        top = stats.max(axis=0) if n else np.zeros(3)
        self.residual = float(np.sqrt(top[0]))  # max |y - y~| over the (centred) rows y
        self.norm = float(np.sqrt(top[1]))  # max |y|
        self.rounded_norm = float(np.sqrt(top[2]))  # max |y~|
        self.bias_max = float(np.max(np.abs(self.bias))) if n else 0.0

    def query_slack(self, q_norm: np.ndarray, q_residual: np.ndarray) -> np.ndarray:
        """Per query, the part of the bound that does not depend on the score: the inputs' rounding and
        the float32 accumulation (float64 ``[m]``)."""
        return SLACK * (q_norm * self.residual + q_residual * self.norm + SLACK * self.d * U_F32 * q_norm * self.rounded_norm)


@njit(nogil=True, cache=True)
def _to_bf16(x: np.ndarray, center: np.ndarray, out: np.ndarray, bias: np.ndarray, l2: bool) -> tuple[float, float, float]:
    """Round the rows ``y = x - center`` (finite float32) to bfloat16 bits in ``out`` (round to nearest,
    ties to even); with ``l2`` write ``|y|^2 / 2`` to ``bias``. Returns the largest squared row norms of
    the residual ``y - y~``, of ``y`` and of ``y~`` (float64 sums)."""
    d = x.shape[1]
    row = np.empty(d, dtype=np.float32)
    row_in = row.view(np.uint32)
    row_bits = np.empty(d, dtype=np.uint32)
    row_back = row_bits.view(np.float32)  # the rounded row read back as float32
    worst_res = worst_norm = worst_low = 0.0
    for i in range(x.shape[0]):
        for j in range(d):
            row[j] = x[i, j] - center[j]
        for j in range(d):
            b = row_in[j]
            r = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
            out[i, j] = np.uint16(r)
            row_bits[j] = r << np.uint32(16)
        res = norm = low = 0.0
        for j in range(d):
            v = np.float64(row[j])
            w = np.float64(row_back[j])
            res += (v - w) * (v - w)
            norm += v * v
            low += w * w
        if l2:
            bias[i] = np.float32(0.5 * norm)
        worst_res = max(worst_res, res)
        worst_norm = max(worst_norm, norm)
        worst_low = max(worst_low, low)
    return worst_res, worst_norm, worst_low


def certified_sweep(
    low: Bf16Base,
    base_f32: Any,
    bias: np.ndarray,
    q: Any,
    heap_s: np.ndarray,
    heap_i: np.ndarray,
    base_block: int,
    buffers: tuple[Any, Any],
) -> int:
    """The exact ``k`` best base rows of one query block through the bfloat16 pass; returns how many
    queries failed their certificate and were searched again in float32.

    ``base_f32`` ``[n, d]`` and ``q`` ``[m, d]`` float32 torch tensors, ``bias`` the engine's float32
    bias (for the re-search), ``heap_s``/``heap_i`` the block's ``[m, k]`` results in the engine's
    convention (written), ``buffers`` a bfloat16 and a float32 tile buffer of at least
    ``m * min(base_block, n)`` elements each (the float32 one also serves the float32 re-search).
    """
    import torch

    n = base_f32.shape[0]
    m, k = heap_s.shape
    width = heap_width(k)
    tile16, tile32 = buffers
    center = torch.from_numpy(low.center)
    qc = q - center if low.l2 else q
    q16 = qc.bfloat16()
    q_back = q16.float()
    q_norm = q_back.norm(dim=1).double().numpy()
    q_residual = (qc - q_back).norm(dim=1).double().numpy()
    wide_s = np.full((m, width), -np.inf, dtype=np.float32)
    wide_i = np.full((m, width), -1, dtype=np.int64)
    worst = wide_s[:, 0].copy()
    for j in range(0, n, base_block):
        w = min(base_block, n - j)
        t16 = tile16[: m * w].view(w, m)
        t32 = tile32[: m * w].view(w, m)
        torch.mm(low.rows[j : j + w], q16.T, out=t16)
        t32.copy_(t16)
        scan_tile(t32.numpy(), low.bias[j : j + w], np.arange(j, j + w), wide_s, wide_i, worst)
    keys = np.empty((m, width), dtype=np.float32)
    ranked = np.empty_like(wide_i)
    q_np = q.numpy()
    pair_score_rows(base_f32.numpy(), q_np, wide_i, low.l2, keys, ranked)  # the scores the layer returns
    best_i = ranked[:, :k]
    kth = keys[:, k - 1].astype(np.float64)
    # worst[c] is the heap's minimum approximate score: every point outside the heap scored at most that,
    # so its true (centred) score is at most `upper`, and its returned score must be strictly worse than the k-th
    h = worst.astype(np.float64)
    upper = h + low.query_slack(q_norm, q_residual) + SLACK * U_BF16 * (np.abs(h) + low.bias_max)
    q64 = q_np.astype(np.float64)
    sums = SLACK * q.shape[1] * 2.0**-53  # relative error of a float64 sum of q.shape[1] terms
    if low.l2:
        # The pass scores the centred rows qc = q - c and yc = x - c as rounded to float32, and
        # |qc - yc|^2 = |qc|^2 - 2 (centred score) >= |qc|^2 - 2 upper; the rounding of the centring
        # moves sqrt(|q - x|^2) by at most 2^-24 (|qc| + |yc|), and the returned distance is a float64
        # sum rounded to float32.
        qc_norm = np.sqrt(np.square(qc.numpy().astype(np.float64)).sum(axis=1))
        reach = np.sqrt(np.maximum(0.0, np.square(qc_norm) - 2.0 * upper)) - SLACK * U_F32 * (qc_norm + low.norm)
        floor = np.square(np.maximum(0.0, reach)) * (1.0 - 2.0 * sums - 2.0 * U_F32)
        certified = np.isneginf(h) | (kth < floor)  # a heap that is not full holds every point
        best_s = 0.5 * (np.square(q64).sum(axis=1)[:, None] - keys[:, :k])  # the engine's q . x - |x|^2 / 2
    else:  # the returned q . y: a float64 sum within sums |q| |y| of the true one, rounded to float32
        ceiling = upper + 2.0 * sums * np.sqrt(np.square(q64).sum(axis=1)) * low.norm
        ceiling = ceiling + 2.0 * U_F32 * np.abs(ceiling)
        certified = np.isneginf(h) | (kth > ceiling)
        best_s = keys[:, :k]
    heap_s[:] = best_s.astype(np.float32)
    heap_i[:] = best_i
    failed = np.flatnonzero(~certified)
    if failed.size:
        sub_s = np.full((failed.size, k), -np.inf, dtype=np.float32)
        sub_i = np.full((failed.size, k), -1, dtype=np.int64)
        sweep(base_f32, bias, q[torch.from_numpy(failed)], sub_s, sub_i, base_block, tile32)
        heap_s[failed], heap_i[failed] = sub_s, sub_i
    return int(failed.size)
