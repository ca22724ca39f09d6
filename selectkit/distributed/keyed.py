"""Keyed randomness: per-item random numbers that depend on a key and the item's global id only.

A sequential generator walked over a rank's rows would give each item a number that depends on which
rank holds it and how many rows come before it there, so a selection would change with the world size.
Here an item's number is a counter-based hash of ``(key, global id)``: two rounds of the splitmix64
finaliser (xor-shift-multiply, full 64-bit avalanche) over the id mixed with two 64-bit key words, the
key words drawn from `numpy.random.SeedSequence` of the key. Vectorised in numpy, O(len(ids)), no state.

A key is an int or a sequence of non-negative ints, e.g. ``(seed, epoch, round, TAG)``; extend it
(`subkey`) for each independent stream.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from selectkit.distributed.shard import is_count

Key = Union[int, Sequence[int]]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def as_key(key: Key) -> tuple[int, ...]:
    """``key`` as a tuple of non-negative ints (ValueError otherwise)."""
    words = (key,) if isinstance(key, (int, np.integer)) else tuple(key)
    if not words or not all(is_count(w) for w in words):
        raise ValueError(f"a key must be a non-negative int or a non-empty sequence of them, got {key!r}")
    return tuple(int(w) for w in words)


def subkey(key: Key, *tags: int) -> tuple[int, ...]:
    """The key of an independent stream under ``key``: ``key`` extended by ``tags``."""
    return as_key(key) + as_key(tags)


def key_generator(key: Key) -> np.random.Generator:
    """A numpy generator of ``key`` (for draws that every rank makes identically, never per item)."""
    return np.random.default_rng(np.random.SeedSequence(as_key(key)))


def _fmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, element-wise on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def keyed_bits(key: Key, ids: np.ndarray) -> np.ndarray:
    """64 random bits per global id (uint64), a function of ``(key, id)`` only."""
    k0, k1 = np.random.SeedSequence(as_key(key)).generate_state(2, dtype=np.uint64)
    z = np.asarray(ids).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _fmix64(z * _GOLDEN + k0)
        return _fmix64(z ^ k1)


def keyed_uniform(key: Key, ids: np.ndarray) -> np.ndarray:
    """One uniform float64 in the open interval (0, 1) per global id, a function of ``(key, id)`` only."""
    bits = keyed_bits(key, ids) >> np.uint64(11)
    return (bits.astype(np.float64) + 0.5) * 2.0**-53


def keyed_gumbel(key: Key, ids: np.ndarray) -> np.ndarray:
    """One standard Gumbel float64 per global id (``-log(-log(u))`` of `keyed_uniform`)."""
    return -np.log(-np.log(keyed_uniform(key, ids)))
