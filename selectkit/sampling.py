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


def permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``0..n-1`` as int64."""
    return rng.permutation(n).astype(np.int64, copy=False)


def walk_chunk(perm: np.ndarray, m: int, position: int, rng: np.random.Generator) -> np.ndarray:
    """Chunk ``position`` of size ``m`` from the permutation ``perm``, without repeats.

    The last chunk of a walk is short when ``m`` does not divide ``len(perm)``; it is topped up with
    items drawn (from ``rng``) among the permutation's earlier chunks, so every chunk holds ``m``
    distinct items and the walk still covers every item once.
    """
    chunk = perm[position * m : (position + 1) * m]
    short = m - chunk.shape[0]
    if short > 0:
        earlier = perm[: position * m]
        extra = earlier[rng.choice(earlier.shape[0], size=short, replace=False)]
        chunk = np.concatenate([chunk, extra])
    return chunk
