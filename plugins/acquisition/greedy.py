"""Running nearest-centre distances for greedy batch acquisition (k-center, BADGE) over a sharded pool,
without an N x N matrix.

`MinDistances` keeps, for every row of this rank's shard, the squared L2 distance to the nearest centre
chosen so far: the labelled set's rows (held whole by every rank) through the neighbour layer's blocked
exact search, then each newly chosen row through one ``[n_local, d] x [d]`` pass. A pick is a global
argmax over the shards (`MinDistances.best`: `selectkit.distributed.global_topk` with ``k = 1``), and
the winner's row travels to every rank as its payload, so each pick costs one small all-gather,
about ``(W - 1) (4 d + 40)`` bytes per rank (plus the all-gather's headers). Memory per rank: the
shard's rows (a float32 copy when centred) and a few ``[n_local]`` vectors.

Every per-row computation runs one logical block of the pool at a time (the blocks are the same rows
at every world size), and the centring shift is the pool's mean summed in block order
(`selectkit.distributed.Comm.block_sum`), so the distances, hence the picks, are the same at every
world size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from selectkit.distributed import Comm, ShardedArray, global_topk
from selectkit.selector import Pool


def flat_rows(values: Any) -> np.ndarray:
    """``values`` as float32 C-contiguous ``[rows, d]`` (trailing dimensions flattened; zero rows allowed)."""
    arr = np.asarray(values)
    width = int(np.prod(arr.shape[1:], dtype=np.int64))
    return np.ascontiguousarray(arr.reshape(arr.shape[0], width), dtype=np.float32)


def shard_and_labelled(pool: Pool, space: str) -> tuple[ShardedArray, np.ndarray]:
    """This rank's rows of ``space`` (``pool.local``) as float32 ``[n_local, d]``, and the labelled set's
    rows (``pool.labelled``, small, whole on every rank) as float32 ``[m, d]``."""
    shard = pool.local(space)
    x = flat_rows(shard.local)
    labelled = pool.labelled
    ref = flat_rows(labelled.get(space)) if len(labelled) else np.zeros((0, x.shape[1]), dtype=np.float32)
    return ShardedArray(x, shard.layout), ref


def pool_l2_shift(comm: Comm, x: ShardedArray) -> np.ndarray | None:
    """`selectkit.neighbors.inputs.l2_shift` of the whole sharded pool: the float32 mean of its rows
    when it carries more of their squared norm than their spread does, else None. The moments are
    summed per logical block along the block tree, so the shift is the same at every world size."""
    d = x.local.shape[1]

    def moments(b: int) -> np.ndarray:
        rows = x.block(b)
        return np.concatenate([rows.sum(axis=0, dtype=np.float64), [np.einsum("ij,ij->", rows, rows, dtype=np.float64)]])

    total = comm.block_sum(moments, x.layout, shape=(d + 1,))
    if x.n == 0:
        return None
    mean = total[:d] / x.n
    offset = float(mean @ mean)
    return mean.astype(np.float32) if offset > total[d] / x.n - offset else None


class Winner(NamedTuple):
    """A pick of `MinDistances.best`: its pool ``position``, the ``value`` it won with, its working
    ``row`` and squared norm ``sq`` (as the distance passes see them), and any ``extra`` payload."""

    position: int
    value: float
    row: np.ndarray
    sq: float
    extra: dict[str, Any]


class MinDistances:
    """Squared L2 distance of each row of this rank's shard to its nearest centre, updated one centre at a time.

    Rows far from the origin against their spread are centred on the pool's mean first (`pool_l2_shift`;
    a float32 copy of the shard then), so that the float32 products of each pass keep the distances'
    precision. Distances do not change under the shift; norms do, so ``sq`` (the working rows' squared
    norms) is an internal of the distance passes and ``norms`` holds the squared norms of the rows as given.

    Args:
        comm: the ranks the pool spans (`selectkit.Pool.collectives`).
        x: this rank's rows ``[n_local, ...]`` (trailing dimensions flattened, as float32), with their layout.
    """

    def __init__(self, comm: Comm, x: ShardedArray) -> None:
        from selectkit.neighbors.inputs import shifted

        self.comm, self.layout = comm, x.layout
        self.positions = x.ids
        self.x = flat_rows(x.local)
        #: float64 ``[n_local]`` squared norms of the rows as given (before any centring)
        self.norms = self._row_norms()
        self.shift = pool_l2_shift(comm, ShardedArray(self.x, self.layout))
        if self.shift is not None:
            self.x = shifted(self.x, self.shift)
            self.sq = self._row_norms()
        else:
            self.sq = self.norms
        self.min = np.full(self.x.shape[0], np.inf)

    def _row_norms(self) -> np.ndarray:
        out = np.empty(self.x.shape[0], dtype=np.float64)
        for _, rows in self.layout.local_blocks():
            out[rows] = np.einsum("ij,ij->i", self.x[rows], self.x[rows], dtype=np.float64)
        return out

    def local_row(self, position: int) -> int | None:
        """The shard's row of pool position ``position``, or None when another rank holds it."""
        return position - self.layout.lo if self.layout.lo <= position < self.layout.hi else None

    def add_reference(self, ref: np.ndarray, config: Any = None) -> None:
        """Fold in the distances to every row of ``ref`` ``[m, d]`` (held by every rank): one exact L2
        index over ``ref`` (the neighbour layer's), searched by the shard's rows one logical block at a time."""
        if ref.shape[0] == 0:
            return
        from selectkit.neighbors import NeighborConfig, NeighborIndex
        from selectkit.neighbors.inputs import shifted

        exact = NeighborConfig(**{**vars(config or NeighborConfig()), "backend": "flat", "metric": "l2"})
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        if self.shift is not None:
            ref = shifted(ref, self.shift)
        index = NeighborIndex(n_neighbors=1, config=exact).fit(ref)
        for _, rows in self.layout.local_blocks():
            dist, _ = index.search(self.x[rows], 1)
            np.minimum(self.min[rows], dist[:, 0].astype(np.float64), out=self.min[rows])

    def best(self, value: np.ndarray, ids: np.ndarray, **extra: np.ndarray) -> Winner:
        """The shard row of largest ``value`` over every rank (ties by lowest ``ids``, e.g. `tie_ids`),
        with its row and the ``extra`` per-row arrays' values; every rank gets the same `Winner`."""
        one = slice(0, 0)
        if value.size:  # this rank's own winner first, so the global argmax moves one row (a NaN goes on, to be refused)
            ties = np.flatnonzero((value == value.max()) | np.isnan(value))
            first = int(ties[np.argmin(ids[ties])])
            one = slice(first, first + 1)
        payload = {"position": self.positions, "row": self.x, "sq": self.sq, **extra}
        top = global_topk(self.comm, value[one], ids[one], 1, payload={name: values[one] for name, values in payload.items()})
        won = {name: values[0] for name, values in top.payload.items()}
        return Winner(int(won.pop("position")), float(top.scores[0]), won.pop("row"), float(won.pop("sq")), won)

    def distances_to(self, pick: Winner) -> np.ndarray:
        """Squared L2 distances of every shard row to the picked row (float64 ``[n_local]``, clipped at 0;
        exactly 0 for the row itself)."""
        dot = np.empty(self.x.shape[0], dtype=np.float64)
        for _, rows in self.layout.local_blocks():
            dot[rows] = self.x[rows] @ pick.row
        d = self.sq + pick.sq - 2.0 * dot
        np.maximum(d, 0.0, out=d)
        own = self.local_row(pick.position)
        if own is not None:
            d[own] = 0.0
        return d

    def add(self, pick: Winner) -> None:
        """Fold in the picked row as a new centre."""
        np.minimum(self.min, self.distances_to(pick), out=self.min)


def d2_seeding(dist: MinDistances, k: int, key: Any, first: Winner) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding over the shards: ``first`` (a `MinDistances.best`), then ``k - 1`` rows each
    drawn with probability proportional to its squared distance to the nearest row drawn so far;
    returns the pool positions (distinct, in draw order) and each one's squared distance when drawn
    (the first: the value it won with, e.g. its squared norm as given, ``dist.norms``).

    Draw ``t`` is the global argmax of ``log d^2 + G`` (the Gumbel-max trick: an exact draw of one
    item), ``G`` standard Gumbel keyed by pool position and ``key(t)`` (a function of the draw's
    number returning its key, e.g. ``lambda t: ctx.key(SAMPLING, t)``), so the draws are the same at
    every world size. Rows already drawn weigh 0, so no row is drawn twice; if every remaining row
    is at distance 0 (exact duplicates), the next is drawn uniformly among the rows not drawn yet
    (the argmax of the same ``G`` over them). Updates ``dist`` in place (each pick but the last folded in).
    """
    from selectkit.distributed import keyed_gumbel

    picks = np.empty(k, dtype=np.int64)
    d2 = np.empty(k, dtype=np.float64)
    taken = np.zeros(dist.x.shape[0], dtype=bool)
    pick = first
    picks[0], d2[0] = first.position, first.value
    for step in range(1, k):
        own = dist.local_row(pick.position)
        if own is not None:
            taken[own] = True
        dist.add(pick)
        weights = np.where(taken, 0.0, dist.min)
        gumbel = keyed_gumbel(key(step), dist.positions)
        with np.errstate(divide="ignore"):
            pick = dist.best(np.log(weights) + gumbel, dist.positions, weight=weights)
        if pick.value == -np.inf:
            pick = dist.best(np.where(taken, -np.inf, gumbel), dist.positions, weight=weights)
        picks[step], d2[step] = pick.position, pick.extra["weight"]
    return picks, d2
