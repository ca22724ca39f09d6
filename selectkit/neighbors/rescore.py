"""The score the layer returns for a (query, neighbour) pair, and the order of a result row.

Every search path ranks candidates by float32 products (``q . x - |x|^2 / 2`` for L2), and their
rounding depends on the BLAS kernel, on where a pair falls in a tile and, in the self-join, on which
side of a product it sits: a duplicate's product can come out one ulp apart on two paths. What the
layer returns does not depend on any of that. `pair_score_rows` computes the score of each returned
pair again from the float32 inputs (C-contiguous rows), summed in float64 by one compiled function
and rounded once to float32: the squared distance ``|q - x|^2`` for L2, ``q . x`` for inner products
(and cosine, on the normalised rows). No BLAS and no fused multiply-add take part, and the sums'
order is the one that function was compiled with, so on a machine a pair gets the same score on
every path (self-join, plain, bfloat16 pass, IVF, FAISS) and under every BLAS kernel. Each row is
then sorted by (returned score, index): ascending distance for L2, descending similarity otherwise,
ties by ascending index, missing neighbours (index ``-1``, score ``inf`` for L2 and ``-inf``
otherwise) last.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

SORT_INSERT_MAX = 32  # rows up to this wide are sorted by insertion (no allocation); wider ones by two stable sorts
LAST_INDEX = np.iinfo(np.int64).max  # where a missing neighbour sorts among indices


@njit(nogil=True, cache=True, fastmath={"reassoc"})  # vectorised: one order, fixed when this function is compiled
def _squared_distance(x: np.ndarray, q: np.ndarray) -> float:
    """``|x - q|^2`` of two float32 rows, summed in float64 (no fused multiply-add)."""
    acc = 0.0
    for c in range(x.shape[0]):
        t = np.float64(x[c]) - np.float64(q[c])
        acc += t * t
    return acc


@njit(nogil=True, cache=True, fastmath={"reassoc"})
def _dot(x: np.ndarray, q: np.ndarray) -> float:
    """``x . q`` of two float32 rows, summed in float64 (each product exact, no fused multiply-add)."""
    acc = 0.0
    for c in range(x.shape[0]):
        acc += np.float64(x[c]) * np.float64(q[c])
    return acc


@njit(nogil=True, cache=True, inline="always")
def _ahead(s_a: float, i_a: int, s_b: float, i_b: int, l2: bool) -> bool:
    """Whether entry ``(s_a, i_a)`` comes before ``(s_b, i_b)`` in a result row."""
    if i_a < 0:
        return False
    if i_b < 0:
        return True
    if s_a != s_b:
        return s_a < s_b if l2 else s_a > s_b
    return i_a < i_b


@njit(nogil=True, cache=True)
def _order(s: np.ndarray, i: np.ndarray, count: int, l2: bool, pos: np.ndarray) -> None:
    """The positions of entries ``0 .. count - 1`` of ``(s, i)`` in row order, into ``pos[:count]``."""
    if count <= SORT_INSERT_MAX:
        for j in range(count):
            m = j - 1
            while m >= 0 and _ahead(s[j], i[j], s[pos[m]], i[pos[m]], l2):
                pos[m + 1] = pos[m]
                m -= 1
            pos[m + 1] = j
        return
    index_key = np.empty(count, dtype=np.int64)  # by index, then stably by score; a missing entry is the largest index and the worst score
    score_key = np.empty(count, dtype=np.float32)
    for j in range(count):
        index_key[j] = i[j] if i[j] >= 0 else LAST_INDEX
    by_index = np.argsort(index_key, kind="mergesort")
    for j in range(count):
        t = by_index[j]
        score_key[j] = np.float32(np.inf) if i[t] < 0 else (s[t] if l2 else -s[t])
    pos[:count] = by_index[np.argsort(score_key, kind="mergesort")]


@njit(nogil=True, cache=True, inline="always")
def _score(x: np.ndarray, q: np.ndarray, l2: bool) -> np.float32:
    """The returned score of one pair: `_squared_distance` for L2, `_dot` otherwise, rounded to float32."""
    return np.float32(_squared_distance(x, q)) if l2 else np.float32(_dot(x, q))


@njit(nogil=True, cache=True)
def pair_score_rows(base: np.ndarray, queries: np.ndarray, idx: np.ndarray, l2: bool, scores: np.ndarray, out: np.ndarray) -> None:
    """The returned score of every pair ``(queries[r], base[idx[r, j]])`` into ``scores`` (float32),
    each row sorted by (score, index) with its indices in ``out``; ``idx < 0`` gets ``inf`` for L2,
    ``-inf`` otherwise, and goes last. Arrays C-contiguous (float32 rows, int64 indices)."""
    k = idx.shape[1]
    missing = np.float32(np.inf) if l2 else np.float32(-np.inf)
    row = np.empty(k, dtype=np.float32)
    pos = np.empty(k, dtype=np.int64)
    for r in range(idx.shape[0]):
        for j in range(k):
            b = idx[r, j]
            row[j] = missing if b < 0 else _score(base[b], queries[r], l2)
        _order(row, idx[r], k, l2, pos)
        for j in range(k):
            scores[r, j] = row[pos[j]]
            out[r, j] = idx[r, pos[j]]


class Twins(NamedTuple):
    """The base's groups of identical rows: ``group[i]`` the group of row ``i`` (``-1`` for a row
    without twins); group ``g``'s rows, ascending, are ``members[starts[g]:starts[g + 1]]``."""

    group: np.ndarray
    starts: np.ndarray
    members: np.ndarray


def twin_groups(base: np.ndarray) -> Twins | None:
    """The groups of identical rows of ``base`` (float32 ``[n, d]``; ``-0.0`` equals ``0.0``), or None
    when every row is distinct. One hash per row, one sort of the hashes, and a comparison of the rows
    whose hashes agree."""
    from selectkit.neighbors.flat import each_row_block

    n = base.shape[0]
    if n < 2:
        return None
    hashes = np.empty(n, dtype=np.uint64)
    each_row_block(n, 16_384, lambda i, j: _row_hashes(base[i:j], hashes[i:j]))
    order = np.argsort(hashes, kind="stable")
    group, starts, members, count = _group_rows(base, hashes, order)
    if count == 0:
        return None
    return Twins(group, starts[: count + 1].copy(), members[: starts[count]].copy())


@njit(nogil=True, cache=True)
def _row_hashes(x: np.ndarray, out: np.ndarray) -> None:
    """A 64-bit FNV-1a hash of each row's values (``-0.0`` hashed as ``0.0``)."""
    value = np.empty(1, dtype=np.float32)
    bits = value.view(np.uint32)
    for i in range(x.shape[0]):
        h = np.uint64(0xCBF29CE484222325)
        for j in range(x.shape[1]):
            value[0] = x[i, j] + np.float32(0.0)
            h = (h ^ np.uint64(bits[0])) * np.uint64(0x100000001B3)
        out[i] = h


@njit(nogil=True, cache=True)
def _group_rows(base: np.ndarray, hashes: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Groups of identical rows from the rows in hash order (equal hashes by ascending index):
    ``(group, starts, members, count)`` as in `Twins`, the arrays sized for the worst case."""
    n, d = base.shape
    group = np.full(n, -1, dtype=np.int64)
    starts = np.zeros(n // 2 + 2, dtype=np.int64)
    members = np.empty(n, dtype=np.int64)
    count, filled, i = 0, 0, 0
    while i < n:
        j = i + 1
        while j < n and hashes[order[j]] == hashes[order[i]]:
            j += 1
        for a in range(i, j - 1):  # each row not yet grouped opens a group of the equal rows after it
            p = order[a]
            if group[p] >= 0:
                continue
            size = 0
            for b in range(a + 1, j):
                r = order[b]
                if group[r] >= 0:
                    continue
                same = True
                for c in range(d):
                    if base[p, c] != base[r, c]:
                        same = False
                        break
                if same:
                    if size == 0:
                        group[p] = count
                        members[filled] = p
                        filled += 1
                    group[r] = count
                    members[filled] = r
                    filled += 1
                    size += 1
            if size:
                count += 1
                starts[count] = filled
        i = j
    return group, starts, members, count


@njit(nogil=True, cache=True)
def with_twins(base: np.ndarray, queries: np.ndarray, l2: bool, twins_group: np.ndarray, starts: np.ndarray, members: np.ndarray, scores: np.ndarray, idx: np.ndarray, seen: np.ndarray, offset: int) -> None:
    """Rows sorted by `pair_score_rows` (``scores``, ``idx``, rewritten in place) completed with the
    twins of their entries: identical base rows have one score, so where a row holds one of them,
    the group's lower-index members that would rank ahead of the row's last entry are put in and
    the row keeps its best entries by (score, index). Equal rows thus enter a row by ascending
    index wherever they fall, the ``k``-th place included, whatever order the search's float32
    products gave them. ``seen`` (``[groups]``, int64) marks the groups each row has looked at, by
    row number (``offset`` plus the row's position)."""
    w = idx.shape[1]
    size = 2 * w
    cand_s = np.empty(size, dtype=np.float32)
    cand_i = np.empty(size, dtype=np.int64)
    pos = np.empty(size, dtype=np.int64)
    for r in range(idx.shape[0]):
        stamp = offset + r
        last_s, last_i = scores[r, w - 1], idx[r, w - 1]
        count = w
        for j in range(w):
            b = idx[r, j]
            if b < 0 or twins_group[b] < 0 or seen[twins_group[b]] == stamp:
                continue
            g = twins_group[b]
            seen[g] = stamp
            for m in range(starts[g], min(starts[g + 1], starts[g] + w)):
                t = members[m]
                if not _ahead(scores[r, j], t, last_s, last_i, l2):
                    break  # members ascend: none after this one enters either
                listed = False
                for c in range(w):
                    listed |= idx[r, c] == t
                if listed:
                    continue
                if count == size:
                    size *= 2
                    grown_s = np.empty(size, dtype=np.float32)
                    grown_i = np.empty(size, dtype=np.int64)
                    grown_s[:count], grown_i[:count] = cand_s[:count], cand_i[:count]
                    cand_s, cand_i, pos = grown_s, grown_i, np.empty(size, dtype=np.int64)
                cand_s[count], cand_i[count] = _score(base[t], queries[r], l2), t
                count += 1
        if count == w:
            continue
        for j in range(w):
            cand_s[j], cand_i[j] = scores[r, j], idx[r, j]
        _order(cand_s, cand_i, count, l2, pos)
        for j in range(w):
            scores[r, j], idx[r, j] = cand_s[pos[j]], cand_i[pos[j]]


def rescored(base: np.ndarray, queries: np.ndarray, idx: np.ndarray, l2: bool, block: int, twins: Twins | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returned scores float32 ``[nq, k]`` of the pairs ``idx`` (int64 ``[nq, k]``) and the indices,
    each row sorted by (score, index) (`pair_score_rows`) and, with ``twins`` (the base's
    `twin_groups`), completed with the lowest-index copies of its entries (`with_twins`). ``base``
    and ``queries`` are the float32 rows the search ran on; runs of at most ``block`` rows go to
    the engine's worker threads."""
    from selectkit.neighbors.flat import run_workers, task_source

    base, queries, idx = np.ascontiguousarray(base), np.ascontiguousarray(queries), np.ascontiguousarray(idx, dtype=np.int64)
    nq, k = idx.shape
    scores = np.empty((nq, k), dtype=np.float32)
    out = np.empty_like(idx)
    if nq == 0:
        return scores, out
    rows = max(1, min(block, -(-nq // 8)))
    next_start = task_source(range(0, nq, rows))

    def worker() -> None:
        seen = None if twins is None else np.full(twins.starts.size - 1, -1, dtype=np.int64)
        while (i := next_start()) is not None:
            j = min(i + rows, nq)
            pair_score_rows(base, queries[i:j], idx[i:j], l2, scores[i:j], out[i:j])
            if twins is not None:
                with_twins(base, queries[i:j], l2, twins.group, twins.starts, twins.members, scores[i:j], out[i:j], seen, i)

    run_workers(worker, -(-nq // rows), per_job=float(rows) * k * base.shape[1])
    return scores, out
