"""Sampling designs over a sharded pool, the same sample at every world size for a given key.

* `gumbel_topk`: ``b`` items without replacement, each draw proportional to the weights among the items
  left (Gumbel-top-k: the top ``b`` of ``log w + Gumbel``, keyed per item), through `global_topk`.
* `bernoulli`: each item independently with its inclusion probability (keyed uniforms; no collective).
* `sample_with_replacement`: exactly ``m`` independent draws proportional to the weights. The blocks'
  masses are gathered and prefix-summed in block order; ``m`` sorted uniforms come from one generator
  of the key on every rank (O(m) memory), and each rank resolves those falling in its blocks' mass
  range with a search in the block's own cumulative sums.
* `inclusion_probabilities`: the capped-proportional ``pi_i = min(1, c q_i)`` with ``sum(pi) = m``,
  capping by fixed-point iterations over block-ordered sums; `selectkit.sampling.inclusion_probabilities`
  at world 1, to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selectkit.distributed.collectives import Comm, TopK, global_topk
from selectkit.distributed.keyed import Key, key_generator, keyed_gumbel, keyed_uniform
from selectkit.distributed.shard import ShardedArray, is_count

#: Scaled scores within this of 1 count as not above it (as in `selectkit.sampling.inclusion_probabilities`).
CAP_TOL = 1e-12


def _weights(values: Any, name: str) -> np.ndarray:
    w = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(w).all() or (w < 0).any():
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
        raise ValueError(f"{name} must be finite and non-negative: {bad.size} are not (first at local row {int(bad[0])})")
    return w


def gumbel_topk(comm: Comm, key: Key, log_weights: Any, ids: Any, b: int) -> TopK:
    """``b`` items drawn without replacement with probability proportional to ``exp(log_weights)``
    (weights ``w``: pass ``log w``; a softmax of scores at temperature ``T``: pass ``scores / T``).

    Items with ``log_weights = -inf`` are never drawn (fewer than ``b`` come back when fewer remain).
    Exact and the same at every world size. Bytes sent per rank: those of `global_topk`,
    ``(W - 1) * 16 b``.
    """

    def perturbed() -> tuple[np.ndarray, np.ndarray]:
        lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        if np.isnan(lw).any() or (lw == np.inf).any():
            raise ValueError(f"gumbel_topk: log weights must be below +inf and not NaN ({int((np.isnan(lw) | (lw == np.inf)).sum())} are not)")
        keep = lw > -np.inf
        return lw[keep] + keyed_gumbel(key, i[keep]), i[keep]

    scores, kept = comm.checked(perturbed, "gumbel_topk")
    return global_topk(comm, scores, kept, b)


def bernoulli(key: Key, pi: Any, ids: Any) -> np.ndarray:
    """The ids drawn when each item is taken independently with probability ``pi`` (ascending when
    ``ids`` are). No collective: an item's draw depends on the key and its id only."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    return ids[keyed_uniform(key, ids) < np.asarray(pi, dtype=np.float64).reshape(-1)]


def sample_with_replacement(comm: Comm, key: Key, p: ShardedArray, m: int) -> np.ndarray:
    """This rank's share of ``m`` independent draws with probability proportional to ``p`` (non-negative
    weights, one per pool row): global ids ascending, repeated when drawn again. Over all ranks exactly
    ``m`` draws, the same at every world size.

    Bytes sent per rank: ``(W - 1) * 8 * max_r B_r`` (the blocks' masses). Memory: ``m`` uniforms.
    """
    comm.check_layout(p.layout)
    layout = p.layout
    if not is_count(m):
        raise ValueError(f"sample_with_replacement: m={m!r} must be a non-negative integer")

    def masses() -> np.ndarray:
        w = _weights(p.local, "sample_with_replacement: weights")
        return np.array([np.cumsum(w[rows])[-1] if rows.stop > rows.start else 0.0 for _, rows in layout.local_blocks()])

    cum = np.cumsum(np.concatenate(comm.all_gather(comm.checked(masses, "sample_with_replacement"))))
    if not cum.size or not cum[-1] > 0:
        raise ValueError("sample_with_replacement: every weight is zero; nothing can be drawn")
    u = np.sort(key_generator(key).random(int(m))) * cum[-1]
    block = np.minimum(np.searchsorted(cum, u, side="right"), int(np.flatnonzero(np.diff(cum, prepend=0.0) > 0)[-1]))
    w = np.asarray(p.local, dtype=np.float64).reshape(-1)
    out = []
    for b, rows in layout.local_blocks():
        lo, hi = np.searchsorted(block, [b, b + 1])
        if lo == hi:
            continue
        within = np.cumsum(w[rows])
        start = cum[b - 1] if b else 0.0
        last = int(np.flatnonzero(w[rows] > 0)[-1])
        pick = np.minimum(np.searchsorted(within, u[lo:hi] - start, side="right"), last)
        out.append(layout.lo + rows.start + pick)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def inclusion_probabilities(comm: Comm, q: ShardedArray, m: float) -> np.ndarray:
    """This rank's ``pi_i = min(1, c q_i)``, with ``c`` set so that ``sum(pi) = m`` over the pool
    (``0 < m <= #{q > 0}``): the items whose scaled score would exceed 1 are capped at 1 and ``c`` is
    recomputed over the rest until no more cap. The same at every world size (block-ordered sums).

    Bytes sent per rank per capping round: one scalar `Comm.block_sum` and one integer all-reduce
    (a few rounds; at most one per distinct capped score).
    """
    comm.check_layout(q.layout)
    layout = q.layout
    w = comm.checked(lambda: _weights(q.local, "inclusion_probabilities: scores"), "inclusion_probabilities")
    positive = int(comm.all_sum(int((w > 0).sum())))
    if not 0 < m <= positive:
        raise ValueError(f"the sample size {m} must be in (0, {positive}] (items with a positive score)")
    capped = np.zeros(w.shape, dtype=bool)
    n_capped = 0
    while True:
        free = np.where(capped, 0.0, w)
        free_sum = float(comm.block_sum(np.array([free[rows].sum() for _, rows in layout.local_blocks()]), layout))
        if not free_sum > 0:  # every positive score capped (m equals their count)
            return capped.astype(np.float64)
        c = (m - n_capped) / free_sum
        new = ~capped & (c * w > 1 + CAP_TOL)
        added = int(comm.all_sum(int(new.sum())))
        if added == 0:
            return np.where(capped, 1.0, np.minimum(1.0, c * w))
        capped |= new
        n_capped += added
