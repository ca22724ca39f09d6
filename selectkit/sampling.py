"""Sampling helpers shared by selectors: subset sizes, class quotas, permutation walks, and sampling
designs over scores (inclusion probabilities, Bernoulli, with replacement, pivotal sampling along a
spatial binary tree), which the importance-sampling selectors (`leverage`, `sensitivity`) use to turn
their scores into a sample.

Pivotal sampling follows "Improved Active Learning via Dependent Leverage Score Sampling": the items
are the leaves of a binary tree built by recursive PCA splits (each node's points are projected on
their first principal direction and split at the median), and the tree is resolved bottom-up by
duels. A node hands its parent one undecided item with a residual probability; two children's items
``a`` and ``b`` with residuals ``p_a + p_b <= 1`` merge into one (``a`` keeps ``p_a + p_b`` with
probability ``p_a / (p_a + p_b)``, otherwise ``b`` does), and with ``p_a + p_b > 1`` one of them is
selected (``a`` with probability ``(1 - p_b) / (2 - p_a - p_b)``) and the other carries ``p_a + p_b - 1``
up. Every item keeps its inclusion probability exactly, the sample size equals the probabilities' sum
whenever that is an integer, and items close in the tree (close in space) rarely both make it: the
sample spreads out.

The tree is built level by level over all nodes at once (power iterations and sorts over segments),
so a level costs ``O(n t)`` for ``t`` coordinates plus a sort; the coordinates are a low-dimensional
projection of the features (the `leverage` selector uses the top principal directions; `sensitivity`
orders its items by cluster and distance, one coordinate).
"""

from __future__ import annotations

import math

import numpy as np


def subset_size(n: int, fraction: float) -> int:
    """Items per selection for a pool of ``n``: ``ceil(fraction * n)`` clipped to ``[1, n]``.

    Rounding up guarantees that a permutation walk covers the pool within ``ceil(1 / fraction)`` epochs.
    """
    if n <= 0:
        return 0
    return int(min(n, max(1, math.ceil(fraction * n - 1e-9))))


def balanced_quotas(counts: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``m`` draws as evenly as possible over classes of sizes ``counts`` (capped by size).

    The remainder of an uneven split goes to randomly chosen classes (from ``rng``); the share a small
    class cannot take goes to the others.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quotas = np.zeros_like(counts)
    m = int(min(m, counts.sum()))
    while m > 0:
        open_ = np.flatnonzero(quotas < counts)
        share, rest = divmod(m, open_.size)
        add = np.full(open_.size, share, dtype=np.int64)
        if rest:
            add[rng.choice(open_.size, size=rest, replace=False)] += 1
        add = np.minimum(add, counts[open_] - quotas[open_])
        quotas[open_] += add
        m -= int(add.sum())
    return quotas


def _mix32(x: np.ndarray) -> np.ndarray:
    """A 32-bit avalanche mix (xor-shift-multiply), element-wise on uint32."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


class FeistelPermutation:
    """A keyed pseudo-random permutation of ``0..n-1``, evaluated at any positions in O(len) time.

    A balanced four-round Feistel network over the smallest even-bit domain ``2**(2h) >= n`` is a
    bijection of that domain; outputs ``>= n`` go through the network again until they land below ``n``
    (cycle walking), which keeps it a bijection of ``0..n-1``. No array of size ``n`` is built, so one
    epoch's ``m`` items out of ``n`` cost O(m) whatever ``n`` is. Pools up to ``2**32`` items.
    """

    rounds = 4

    def __init__(self, n: int, key: np.random.Generator) -> None:
        if not 0 < n <= 2**32:
            raise ValueError(f"FeistelPermutation needs 0 < n <= 2**32, got {n}")
        self.n = int(n)
        half = max(1, ((self.n - 1).bit_length() + 1) // 2)
        self.half = np.uint32(half)
        self.mask = np.uint32((1 << half) - 1)
        self.keys = key.integers(0, 2**32, size=self.rounds, dtype=np.uint32)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix32(right ^ k) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """The permuted values at ``positions`` (int64 array in ``0..n-1``)."""
        out = self._encrypt(np.asarray(positions).astype(np.uint32))
        outside = np.flatnonzero(out >= self.n)
        while outside.size:
            out[outside] = self._encrypt(out[outside])
            outside = outside[out[outside] >= self.n]
        return out.astype(np.int64)


def walk_chunk(perm: FeistelPermutation, m: int, position: int, rng: np.random.Generator) -> np.ndarray:
    """Chunk ``position`` (of size ``m``) of a walk through the permutation ``perm``, without repeats.

    The last chunk of a walk is short when ``m`` does not divide ``n``; it is topped up with items
    drawn (from ``rng``) among the walk's earlier chunks, so every chunk holds ``m`` distinct items and
    the walk still covers every item once.
    """
    start = position * m
    stop = min(start + m, perm.n)
    chunk = perm(np.arange(start, stop, dtype=np.int64))
    short = m - chunk.shape[0]
    if short > 0:
        earlier = rng.choice(start, size=short, replace=False)
        chunk = np.concatenate([chunk, perm(earlier)])
    return chunk


def class_groups(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(classes, members)``: the sorted distinct labels and, for each, its pool positions ascending."""
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    order = np.argsort(inverse, kind="stable").astype(np.int64)
    bounds = np.cumsum(np.bincount(inverse, minlength=classes.size))[:-1]
    return classes, np.split(order, bounds)

#: Power iterations per tree level for each node's first principal direction.
POWER_ITERATIONS = 3
#: Residual probabilities within this of 0 or 1 count as decided.
TOL = 1e-9


def inclusion_probabilities(q: np.ndarray, m: float) -> np.ndarray:
    """``pi_i = min(1, c q_i)`` with ``c`` chosen so that ``sum(pi) = m`` (``0 < m <= #{q > 0}``).

    Items whose scaled score would exceed 1 are capped at 1 and the rest rescaled (the usual iterative
    capping, solved at once over the sorted scores).
    """
    q = np.asarray(q, dtype=np.float64)
    positive = int((q > 0).sum())
    if not 0 < m <= positive:
        raise ValueError(f"the sample size {m} must be in (0, {positive}] (items with a positive score)")
    order = np.argsort(-q, kind="stable")
    qs = q[order]
    tail = np.cumsum(qs[::-1])[::-1]  # tail[k] = sum of qs[k:]
    # k items capped: c_k = (m - k) / tail[k]; valid when c_k * qs[k] <= 1
    ks = np.arange(min(int(np.floor(m)), q.size - 1) + 1)
    c = (m - ks) / tail[ks]
    ok = c * qs[ks] <= 1 + 1e-12
    k = int(ks[np.argmax(ok)]) if ok.any() else int(np.floor(m))
    pi = np.empty_like(q)
    pi[order[:k]] = 1.0
    pi[order[k:]] = np.minimum(1.0, ((m - k) / tail[k]) * qs[k:]) if k < q.size else 0.0
    return pi


def bernoulli(pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each item independently with probability ``pi_i``; positions ascending."""
    return np.flatnonzero(rng.random(pi.shape[0]) < pi).astype(np.int64)


def with_replacement(p: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` independent draws with probabilities ``p`` (summing to 1)."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(m), side="right"), p.shape[0] - 1).astype(np.int64)


def pca_tree_levels(coords: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(order, starts)``: leaf order of the recursive PCA tree and each level's segment starts.

    Level ``0`` is the root (``[0]``); a segment of size ``s >= 2`` at one level is split into its
    first ``s // 2`` and last ``s - s // 2`` positions at the next (sorted by the projection on the
    segment's first principal direction), a segment of size 1 stays as it is. ``order[j]`` is the item
    at leaf position ``j``.
    """
    n, t = coords.shape
    order = np.arange(n, dtype=np.int64)
    xo = np.array(coords, dtype=np.float32)
    starts = np.zeros(1, dtype=np.int64)
    levels = [starts]
    init = rng.standard_normal(t).astype(np.float32)
    while True:
        sizes = np.diff(np.append(starts, n))
        if sizes.max() <= 1:
            break
        seg = np.repeat(np.arange(starts.size), sizes)
        counts = sizes[:, None].astype(np.float32)
        mean = np.add.reduceat(xo, starts, axis=0) / counts
        xc = xo - mean[seg]
        v = np.tile(init, (starts.size, 1))
        for _ in range(POWER_ITERATIONS):
            u = np.einsum("ij,ij->i", xc, v[seg])
            v = np.add.reduceat(xc * u[:, None], starts, axis=0)
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            v = np.where(norm > 0, v / np.where(norm > 0, norm, 1.0), init[None, :] / np.linalg.norm(init))
        proj = np.einsum("ij,ij->i", xc, v[seg]).astype(np.float64)
        spread = float(np.abs(proj).max()) or 1.0
        # one sort key: the segment, then the projection squeezed into (0.01, 0.99)
        within = np.argsort(seg + 0.5 + 0.49 * np.tanh(proj / spread), kind="stable")
        order = order[within]
        xo = xo[within]
        split = starts + sizes // 2
        starts = np.sort(np.concatenate([starts, split[sizes >= 2]]))
        levels.append(starts)
    return order, levels


def pivotal(pi: np.ndarray, coords: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pivotal sampling of items with inclusion probabilities ``pi`` along the PCA tree of ``coords``.

    Items with ``pi = 1`` are taken and items with ``pi = 0`` left out before the tree is built; the
    sample size is ``sum(pi)`` when that is an integer (otherwise its floor or ceiling). Returns pool
    positions, ascending.
    """
    chosen, survivor, residual = pivotal_tree(pi, coords, rng)
    if survivor >= 0 and rng.random() < residual:
        chosen = np.sort(np.append(chosen, survivor))
    return chosen


def pivotal_tree(pi: np.ndarray, coords: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, float]:
    """`pivotal` up to its last coin: ``(chosen, survivor, residual)``.

    ``chosen`` are the positions the tree's duels took (and those with ``pi = 1``), ascending;
    ``survivor`` is the position left undecided at the root (-1 when none) and ``residual`` its
    remaining inclusion probability. Taking the survivor with probability ``residual`` completes the
    design; a caller may instead hand it to a later pivotal pass with that probability.
    """
    pi = np.asarray(pi, dtype=np.float64)
    certain = np.flatnonzero(pi >= 1 - TOL)
    open_ = np.flatnonzero((pi > TOL) & (pi < 1 - TOL))
    if open_.size == 0:
        return certain.astype(np.int64), -1, 0.0
    order, levels = pca_tree_levels(coords[open_], rng)
    n = open_.size
    # state per segment at the deepest level: every leaf holds its own item
    surv = order.copy()  # local item index, or -1
    prob = pi[open_][order]
    chosen: list[np.ndarray] = []
    for depth in range(len(levels) - 2, -1, -1):
        parent, child = levels[depth], levels[depth + 1]
        sizes = np.diff(np.append(parent, n))
        left = np.searchsorted(child, parent)
        two = sizes >= 2
        right = np.where(two, np.searchsorted(child, parent + sizes // 2), left)
        sa, pa = surv[left], prob[left]
        sb, pb = np.where(two, surv[right], -1), np.where(two, prob[right], 0.0)
        duel = two & (sa >= 0) & (sb >= 0)
        out_s = np.where(sa >= 0, sa, sb)
        out_p = np.where(sa >= 0, pa, pb)
        if duel.any():
            u = rng.random(int(duel.sum()))
            a, b, ps, qs = sa[duel], sb[duel], pa[duel], pb[duel]
            total = ps + qs
            low = total <= 1.0
            # merge: one item keeps the summed probability
            keep_a = u < np.where(low, ps / np.where(total > 0, total, 1.0), (1.0 - qs) / np.where(2.0 - total > 0, 2.0 - total, 1.0))
            winner = np.where(keep_a, a, b)  # low: survivor; high: the selected item
            loser = np.where(keep_a, b, a)
            chosen.append(winner[~low])
            ds = np.where(low, winner, loser)
            dp = np.where(low, total, total - 1.0)
            out_s[duel], out_p[duel] = ds, dp
        decided_one = (out_s >= 0) & (out_p >= 1 - TOL)
        if decided_one.any():
            chosen.append(out_s[decided_one])
        gone = (out_s >= 0) & ((out_p <= TOL) | (out_p >= 1 - TOL))
        out_s[gone] = -1
        out_p[gone] = 0.0
        surv, prob = out_s, out_p
    local = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    taken = np.sort(np.concatenate([certain, open_[local]])).astype(np.int64)
    return (taken, int(open_[surv[0]]), float(prob[0])) if surv[0] >= 0 else (taken, -1, 0.0)
