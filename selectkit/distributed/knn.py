"""`sharded_knn`: k-nearest neighbours of every rank's queries over a base sharded across the ranks.

Each rank builds one neighbour-layer index (`selectkit.neighbors.NeighborIndex`) over its own base
rows. Then every rank's queries are broadcast in turn, a block of at most ``query_block`` rows at a
time; each rank searches the block in its shard and sends its candidates, with their global ids, to
the queries' owner, who keeps the best ``k`` by (score, global id), as FAISS's ``IndexShards`` merges
its shards' results.

The candidates' scores are recomputed from the raw float32 rows before they leave their rank, by the
layer's own pair score (`selectkit.neighbors.rescore`), so a score does not depend on the shard or on
how the layer centred the shard: with exact search the result is the same at every world size, and
equals the unsharded `selectkit.neighbors.knn` (bit for bit, except L2 distances where the unsharded
layer centres the base far from the origin; see docs/distributed.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selectkit.distributed.collectives import Comm
from selectkit.distributed.shard import ShardedArray, is_count
from selectkit.neighbors import NeighborConfig, NeighborIndex
from selectkit.neighbors.config import resolve
from selectkit.neighbors.inputs import as_float32, check_k, normalized

#: Query rows broadcast per step unless ``query_block`` says otherwise.
QUERY_BLOCK = 16_384
_RESCORE_ROWS = 1024


def _rows(x: Any, d: int, name: str) -> np.ndarray:
    """``x`` as float32 C-contiguous ``[n, d]``, finite (an empty ``[0, d]`` allowed)."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {arr.shape}")
    if arr.shape[0] == 0:
        return np.zeros((0, arr.shape[1] if arr.shape[1] else d), dtype=np.float32)
    return as_float32(arr, name)


def _rescore(base: np.ndarray, queries: np.ndarray, idx: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The layer's scores of the pairs ``(query i, base idx[i, j])`` from the raw float32 rows (cosine:
    from the unit-norm copies of the rows involved), each row sorted by (score, index)."""
    from selectkit.neighbors.rescore import rescored

    if metric != "cosine":
        return rescored(base, queries, idx, metric == "l2", _RESCORE_ROWS)
    found = idx >= 0
    used, position = np.unique(idx[found], return_inverse=True)
    local = np.full(idx.shape, -1, dtype=np.int64)
    local[found] = position
    scores, order = rescored(normalized(base[used]), normalized(queries), local, False, _RESCORE_ROWS)
    return scores, np.where(order >= 0, used[np.maximum(order, 0)], -1)


def _merge(scores: np.ndarray, ids: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``k`` of ``[b, K]`` candidates by (score, id): ascending for L2, else descending."""
    b, width = ids.shape
    key = scores.astype(np.float64) if metric == "l2" else -scores.astype(np.float64)
    missing = ids < 0
    key[missing] = np.inf
    row = np.repeat(np.arange(b), width)
    ranked = np.where(missing, np.iinfo(np.int64).max, ids).reshape(-1)
    order = np.lexsort((ranked, key.reshape(-1), row)).reshape(b, width)[:, :k] % width
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _drop_own(scores: np.ndarray, ids: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own id from its ``k + 1`` results (or the last entry when it is absent)."""
    b, width = ids.shape
    hit = ids == own[:, None]
    keep = np.ones_like(hit)
    keep[np.arange(b), np.where(hit.any(axis=1), np.argmax(hit, axis=1), width - 1)] = False
    return scores[keep].reshape(b, width - 1), ids[keep].reshape(b, width - 1)


def sharded_knn(
    comm: Comm,
    queries: Any,
    base: ShardedArray,
    k: int,
    *,
    config: NeighborConfig | None = None,
    exclude_self: bool = False,
    query_block: int = QUERY_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest pool rows (over every rank's shard of ``base``) of this rank's ``queries``
    ``[nq, d]``: ``(scores float32 [nq, k], global ids int64 [nq, k])``, best first, ties by lowest id.

    Scores follow the layer: squared L2 ascending for ``config.metric='l2'``, similarities descending
    for 'ip' and 'cosine'. ``queries=None`` with ``exclude_self=True`` searches the base against itself,
    each row leaving out its own id. ``config.backend`` other than 'flat' searches each shard
    approximately (each shard builds its own index). Every rank must call it, with or without queries.

    Bytes sent per rank ``r`` (``nq`` queries over all ranks, ``nq_r`` its own): the broadcasts of
    every query block, at most ``4 d nq``, plus its candidates for the other ranks' queries,
    ``12 k (nq - nq_r)``. Memory: the layer's index over the local base, one query block
    (``4 d query_block``) and, on the owner, its candidates from every rank (``12 k W query_block``).
    """
    config = resolve(config)
    metric = config.metric
    layout = base.layout
    comm.check_layout(layout)
    want = k + 1 if exclude_self else k

    def prepare() -> tuple[np.ndarray, np.ndarray]:
        if not is_count(query_block, 1):
            raise ValueError(f"sharded_knn: query_block={query_block!r} must be a positive integer")
        if exclude_self and queries is not None:
            raise ValueError("exclude_self=True needs queries=None: a query's own point is only known when the queries are the base")
        check_k(k, layout.n, exclude_self)
        rows = _rows(base.local, 0, "base")
        q = rows if queries is None else _rows(queries, rows.shape[1], "queries")
        return rows, q

    rows, q = comm.checked(prepare, "sharded_knn")
    sizes = np.stack(comm.all_gather(np.array([[q.shape[0], q.shape[1], rows.shape[1]]], dtype=np.int64), "sharded_knn"))[:, 0]
    if len(set(sizes[:, 1:].ravel().tolist())) > 1:
        raise ValueError(f"sharded_knn: queries and base must have one width on every rank, got (queries, base) = {sizes[:, 1:].tolist()}")
    local_k = [min(want, layout.rows_of(r)[1] - layout.rows_of(r)[0]) for r in range(comm.world)]
    index = NeighborIndex(n_neighbors=local_k[comm.rank], config=config).fit(rows) if rows.shape[0] else None
    nq = q.shape[0]
    out_scores = np.empty((nq, k), dtype=np.float32)
    out_ids = np.empty((nq, k), dtype=np.int64)
    record = np.dtype([("score", "f4"), ("id", "i8")])
    for src in range(comm.world):
        for start in range(0, int(sizes[src, 0]), query_block):
            block = comm.broadcast(q[start : start + query_block] if comm.rank == src else None, src, "sharded_knn")
            mine = np.empty((block.shape[0], local_k[comm.rank]), dtype=record)
            if index is not None:
                _, idx = index.search(block, local_k[comm.rank])
                scores, idx = _rescore(rows, block, idx, metric)
                mine["score"], mine["id"] = scores, np.where(idx >= 0, idx + layout.lo, -1)
            got = comm.gather(mine.reshape(-1), src, "sharded_knn")
            if got is None:
                continue
            cand = np.concatenate([g.reshape(block.shape[0], kr) for g, kr in zip(got, local_k)], axis=1)
            scores, ids = _merge(cand["score"], cand["id"], want, metric)
            if exclude_self:
                scores, ids = _drop_own(scores, ids, np.arange(start, start + block.shape[0], dtype=np.int64) + layout.lo)
            out_scores[start : start + block.shape[0]], out_ids[start : start + block.shape[0]] = scores, ids
    return out_scores, out_ids
