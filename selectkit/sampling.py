"""Sampling helpers shared by selectors: subset sizes, class quotas, permutation walks."""

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
