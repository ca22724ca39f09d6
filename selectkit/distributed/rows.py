"""Moving some rows of a sharded pool array between ranks (used by the SMOTE family and hard-negative
mining, and open to any sharded selector).

A pool array is held as a `selectkit.distributed.ShardedArray` (rank ``r`` owns the contiguous rows
``[lo, hi)``). Three ways to reach rows another rank holds, each sending only the rows asked for:

* `checked_rows`: this rank's rows checked by a function run on every rank (an error on any rank is
  raised on all), with an empty shard given the other ranks' row shape;
* `gather_rows`: the rows at some positions (the same on every rank), whole on every rank, in
  position order (an all-gather of each rank's share);
* `fetch_rows`: the rows at positions each rank chooses for itself (two all-to-alls: the positions to
  their owners, the rows back);
* `reshard`: the rows at some positions (the same on every rank) as a sharded array of their own, cut
  in the pool's logical blocks (one all-to-all), e.g. one class's members or a corpus, for
  `selectkit.distributed.sharded_knn` to search.

All results are the same at every world size. Bytes sent per rank: `gather_rows`, ``(W - 1)`` times
the largest rank's share; `fetch_rows`, the positions it asks for (8 bytes each) and the rows others
ask of it; `reshard`, the rows that change owner.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from selectkit.distributed.collectives import Comm
from selectkit.distributed.shard import ShardedArray, ShardLayout


def _row_bytes(rows: np.ndarray) -> np.ndarray:
    """``rows`` as one flat uint8 vector."""
    return np.ascontiguousarray(rows).reshape(-1).view(np.uint8)


def _from_bytes(raw: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    """The rows (dtype and row shape of ``like``) of the byte vectors ``raw``, concatenated."""
    flat = np.concatenate([np.zeros(0, np.uint8), *raw])
    return flat.view(like.dtype).reshape(-1, *like.shape[1:])


def checked_rows(comm: Comm, rows: ShardedArray, check: Callable[[np.ndarray, int], np.ndarray], what: str) -> ShardedArray:
    """``check(local rows, global offset of the first)`` on every rank that holds rows, its
    ValueError (a `ConfigError`) raised on every rank; a rank without rows gets ``[0, ...]`` in the
    checked rows' shape and dtype (a provider may answer no items with a bare ``[0]``)."""
    local = rows.local

    def run() -> np.ndarray | None:
        return check(local, rows.layout.lo) if local.shape[0] else None

    out = comm.checked(run, what)
    shapes = comm.all_gather_objects(None if out is None else (out.shape[1:], out.dtype.str), what)
    shape, dtype = next(s for s in shapes if s is not None)
    if out is None:
        out = np.zeros((0, *shape), dtype=dtype)
    return ShardedArray(out, rows.layout)


def gather_rows(comm: Comm, rows: ShardedArray, positions: np.ndarray, what: str) -> np.ndarray:
    """The rows at ``positions`` (sorted, distinct, the same on every rank) on every rank, in that order."""
    positions = np.asarray(positions, dtype=np.int64)
    lo, hi = rows.layout.lo, rows.layout.hi
    a, b = np.searchsorted(positions, [lo, hi])
    mine = np.ascontiguousarray(rows.local[positions[a:b] - lo])
    return np.concatenate(comm.all_gather(mine, what))


def fetch_rows(comm: Comm, rows: ShardedArray, positions: np.ndarray, what: str) -> np.ndarray:
    """The rows at this rank's ``positions`` (any order, repeats allowed), in that order; every rank
    calls it, with its own positions (possibly none)."""
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    layout = rows.layout
    owner = layout.owner(positions)
    order = np.argsort(owner, kind="stable")
    cuts = np.cumsum(np.bincount(owner, minlength=comm.world))[:-1]
    asked = comm.all_to_all(np.split(positions[order], cuts), what)
    replies = comm.all_to_all([_row_bytes(rows.local[np.asarray(p, dtype=np.int64) - layout.lo]) for p in asked], what)
    out = np.empty((positions.size, *rows.local.shape[1:]), dtype=rows.local.dtype)
    out[order] = _from_bytes(replies, rows.local)
    return out


def reshard(comm: Comm, rows: ShardedArray, positions: np.ndarray, what: str) -> tuple[Comm, ShardedArray]:
    """The rows at ``positions`` (sorted, distinct, the same on every rank) as an array of their own,
    row ``j`` on the rank that owns ``j`` in a layout of ``len(positions)`` rows in the pool's logical
    blocks; with the `Comm` to search it on.

    When there are fewer rows than ranks (a layout needs a row per rank at least), every rank gets
    them all and a world of one (`Comm.alone`): an exact search over them gives the same result.
    """
    positions = np.asarray(positions, dtype=np.int64)
    layout = rows.layout
    if positions.size == layout.n:
        return comm, rows
    if positions.size < comm.world:
        return Comm.alone(), ShardedArray(gather_rows(comm, rows, positions, what), ShardLayout(positions.size, block_rows=layout.block_rows))
    target = ShardLayout(positions.size, comm.world, comm.rank, layout.block_rows)
    a, b = np.searchsorted(positions, [layout.lo, layout.hi])
    mine = rows.local[positions[a:b] - layout.lo]
    dest = target.owner(np.arange(a, b, dtype=np.int64))
    cuts = np.cumsum(np.bincount(dest, minlength=comm.world))[:-1]
    got = comm.all_to_all([_row_bytes(part) for part in np.split(mine, cuts)], what)
    return comm, ShardedArray(_from_bytes(got, rows.local), target)
