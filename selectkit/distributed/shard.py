"""Contiguous sharding of a pool over ranks, in fixed logical blocks, and the fixed summation tree over them.

A pool of ``n`` rows is cut into logical blocks of ``block_rows`` rows (the last one shorter), whatever
the world size. Rank ``r`` owns a contiguous run of whole blocks: the ``n_blocks`` blocks are split as
evenly as possible, the first ``n_blocks % world`` ranks taking one more. A rank's shard is therefore
one contiguous row range ``[lo, hi)``, and a block is the same rows at every world size, which is what
lets a reduction over blocks give the same result at world 1, 2 or 4.

The summation tree: block partials are added along a fixed binary tree over block ids (the perfect tree
over ``2**L >= n_blocks`` leaves, empty leaves skipped). Each node's value is its left child plus its
right child, or the left child alone when the right one is empty, so a node has one value wherever it
is computed. A rank reduces the largest aligned subtrees inside its block range itself (`canonical_nodes`,
at most ``2 log2(blocks owned) + 1`` of them) and the nodes above are combined from those
(`tree_value`): the root is the same float64 sum, bit for bit, at every world size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from selectkit.errors import ConfigError

#: Rows per logical block unless ``distributed.block_rows`` says otherwise.
DEFAULT_BLOCK_ROWS = 65_536


def is_count(value: object, minimum: int = 0) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def check_world(n: int, world: int) -> None:
    """Refuse a world larger than the pool: `ConfigError` naming the world size and the pool size."""
    if world > n:
        raise ConfigError(
            f"world size {world} (torchrun --nproc_per_node x nodes, or trainer.devices x trainer.num_nodes) is larger than "
            f"the pool of {n} items: run on at most {n} ranks, or select from a larger pool"
        )


@dataclass(frozen=True)
class ShardLayout:
    """Which rows and blocks of an ``n``-row pool rank ``rank`` of ``world`` owns.

    Attributes:
        n: rows in the pool.
        world: number of ranks.
        rank: this rank.
        block_rows: rows per logical block (``distributed.block_rows``).
    """

    n: int
    world: int = 1
    rank: int = 0
    block_rows: int = DEFAULT_BLOCK_ROWS

    def __post_init__(self) -> None:
        """Check the numbers: a bad block size names ``distributed.block_rows``; a world above ``n`` is refused."""
        if not is_count(self.block_rows, 1):
            raise ConfigError(f"distributed.block_rows={self.block_rows!r} must be a positive integer")
        if not is_count(self.n):
            raise ValueError(f"ShardLayout needs a pool size n >= 0, got {self.n!r}")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world}")
        check_world(int(self.n), int(self.world))

    @property
    def n_blocks(self) -> int:
        """Logical blocks in the pool."""
        return -(-int(self.n) // int(self.block_rows))

    def blocks_of(self, rank: int) -> range:
        """The block ids rank ``rank`` owns (a contiguous, possibly empty, range)."""
        share, extra = divmod(self.n_blocks, self.world)
        start = rank * share + min(rank, extra)
        return range(start, start + share + (1 if rank < extra else 0))

    def rows_of(self, rank: int) -> tuple[int, int]:
        """``(lo, hi)``: the global row range rank ``rank`` owns."""
        blocks = self.blocks_of(rank)
        return min(self.n, blocks.start * self.block_rows), min(self.n, blocks.stop * self.block_rows)

    def block_bounds(self, block: int) -> tuple[int, int]:
        """``(lo, hi)``: the global rows of block ``block``."""
        return block * self.block_rows, min(self.n, (block + 1) * self.block_rows)

    @property
    def blocks(self) -> range:
        """This rank's block ids."""
        return self.blocks_of(self.rank)

    @property
    def lo(self) -> int:
        """First global row of this rank's shard."""
        return self.rows_of(self.rank)[0]

    @property
    def hi(self) -> int:
        """One past the last global row of this rank's shard."""
        return self.rows_of(self.rank)[1]

    @property
    def n_local(self) -> int:
        """Rows in this rank's shard."""
        lo, hi = self.rows_of(self.rank)
        return hi - lo

    def local_blocks(self) -> Iterator[tuple[int, slice]]:
        """``(block id, local row slice)`` for each block of this rank, in block order."""
        lo = self.lo
        for b in self.blocks:
            start, stop = self.block_bounds(b)
            yield b, slice(start - lo, stop - lo)

    def owner(self, ids: np.ndarray) -> np.ndarray:
        """The rank owning each global row id (int64 array)."""
        block = np.asarray(ids, dtype=np.int64) // self.block_rows
        share, extra = divmod(self.n_blocks, self.world)
        front = extra * (share + 1)  # blocks held by the ranks that take one more
        rest = extra + (block - front) // max(share, 1)
        return np.where(block < front, block // (share + 1), rest).astype(np.int64)


@dataclass(frozen=True)
class ShardedArray:
    """This rank's rows of a pool-sized array (``local`` holds global rows ``layout.lo .. layout.hi - 1``).

    ``local`` may be a memory map or any array slicing to views; nothing here copies it.
    """

    local: np.ndarray
    layout: ShardLayout

    def __post_init__(self) -> None:
        """The local rows must be exactly the layout's shard."""
        if self.local.shape[0] != self.layout.n_local:
            raise ValueError(
                f"a shard of rows [{self.layout.lo}, {self.layout.hi}) needs {self.layout.n_local} local rows, got {self.local.shape[0]}"
            )

    @classmethod
    def from_global(cls, array: np.ndarray, layout: ShardLayout) -> "ShardedArray":
        """This rank's rows of a whole (e.g. memory-mapped) array, as a view."""
        if array.shape[0] != layout.n:
            raise ValueError(f"the array has {array.shape[0]} rows but the layout's pool has {layout.n}")
        return cls(array[layout.lo : layout.hi], layout)

    @property
    def offset(self) -> int:
        """Global id of ``local[0]``."""
        return self.layout.lo

    @property
    def n(self) -> int:
        """Rows in the whole pool."""
        return self.layout.n

    @property
    def ids(self) -> np.ndarray:
        """Global ids of the local rows (int64)."""
        return np.arange(self.layout.lo, self.layout.hi, dtype=np.int64)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(block id, rows)`` for each local block, in block order (views)."""
        for b, rows in self.layout.local_blocks():
            yield b, self.local[rows]

    def block(self, b: int) -> np.ndarray:
        """The rows of local block ``b`` (a view)."""
        start, stop = self.layout.block_bounds(b)
        return self.local[start - self.layout.lo : stop - self.layout.lo]


def tree_depth(n_blocks: int) -> int:
    """Levels of the summation tree above the leaves: the smallest ``L`` with ``2**L >= n_blocks``."""
    return max(0, int(n_blocks - 1).bit_length())


def canonical_nodes(start: int, stop: int, n_blocks: int) -> list[tuple[int, int]]:
    """The largest aligned tree nodes ``(level, index)`` that tile blocks ``[start, stop)``, left to right.

    A node covers blocks ``[index * 2**level, (index + 1) * 2**level)``; a range ending at the last
    block may take nodes that reach past it (into empty leaves).
    """
    end = stop if stop < n_blocks else 1 << tree_depth(n_blocks)
    top = tree_depth(n_blocks)
    nodes = []
    pos = start
    while pos < stop:
        level = top if pos == 0 else min(top, (pos & -pos).bit_length() - 1)
        while pos + (1 << level) > end:
            level -= 1
        nodes.append((level, pos >> level))
        pos += 1 << level
    return nodes


def tree_value(
    level: int,
    index: int,
    n_blocks: int,
    leaf: Callable[[int], np.ndarray] | None = None,
    known: dict[tuple[int, int], np.ndarray] | None = None,
) -> np.ndarray | None:
    """The value of tree node ``(level, index)``: a known node's value, a leaf's ``leaf(block)``, or its
    children's sum (left + right, or left alone); None for a node over empty leaves only."""
    if index << level >= n_blocks:
        return None
    if known is not None and (level, index) in known:
        return known[(level, index)]
    if level == 0:
        if leaf is None:
            raise ValueError(f"block {index} is neither known nor computable: the nodes do not cover every block")
        return leaf(index)
    left = tree_value(level - 1, 2 * index, n_blocks, leaf, known)
    right = tree_value(level - 1, 2 * index + 1, n_blocks, leaf, known)
    return left if right is None else left + right
