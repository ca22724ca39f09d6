"""Corpus-level hard-negative mining over the neighbour layer, memory-bounded (never ``N x N``).

For each anchor the ``depth`` nearest corpus items come from one `selectkit.neighbors.NeighborIndex`
built over the corpus, searched in blocks of anchors; or, over a corpus sharded across ranks, from
`selectkit.distributed.sharded_knn` (each rank searches its shard, the candidates are merged by
(score, id)), every rank mining for its own anchors in step with the others. The candidates of an anchor then pass, in this
order: removal of the anchor itself, of its positives and (optionally) of items with its label; the
score filters (absolute margin, relative margin, false-negative guard, maximum and minimum score); the
rank window ``[rank_min, rank_max)``, counted among the candidates that survived (as in
sentence-transformers' ``range_min`` / ``range_max``). Of what is left, the best ``negatives`` are
taken (``sampling='top'``) or ``negatives`` are drawn uniformly (``'random'``) and listed best first.
Anchors left with too few candidates are searched again at twice the depth, up to ``max_depth``.
Every removal is counted per filter.

Scores are similarities, larger is closer: cosine similarity, inner product, or minus the squared
Euclidean distance for ``metric='l2'``. Margins refer to the anchor's positive score (the lowest of its
positives when it has several): a candidate is kept when ``score <= pos - absolute_margin``,
``score <= pos - |pos| * relative_margin`` (``pos * (1 - m)`` for a positive ``pos``) and
``score <= pos + |pos| * (false_negative_ratio - 1)`` (``ratio * pos`` for a positive ``pos``).

Random draws are keyed hashes of (seed, anchor, candidate), and padding's of (seed, the anchor's
global row), the seed drawn from the caller's generator: a draw does not depend on the block size, on
how often an anchor was searched again, or on which rank mines it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from selectkit.distributed import Comm, ShardedArray, sharded_knn
from selectkit.errors import ConfigError
from selectkit.distributed.rows import fetch_rows

#: The filters in the order they apply; counts in `Mined.removed` use these names.
FILTERS = ("self", "positive", "same_label", "absolute_margin", "relative_margin", "false_negative", "max_score", "min_score", "rank_window")
#: Anchors searched per block (fixed, so the work per block, not the result, depends on it).
BLOCK = 4096
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class MiningSettings:
    """What to mine: see the module docstring for the meaning and order of the filters."""

    negatives: int = 3
    depth: int = 64
    max_depth: int = 1024
    rank_min: int = 0
    rank_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    false_negative_ratio: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    sampling: str = "top"
    on_short: str = "skip"
    exclude_same_label: bool = True


@dataclass
class Mined:
    """The outcome of `mine` for ``m`` anchors.

    Attributes:
        negatives: int64 ``[m, k]`` item ids, best first; ``-1`` where fewer than ``k`` were found.
        scores: float32 ``[m, k]`` their scores (``-inf`` where missing).
        found: int64 ``[m]`` candidates each anchor had after every filter (before padding).
        padded: int64 ``[m]`` negatives padded in with random corpus items (``on_short='pad'``).
        depth: int64 ``[m]`` the search depth each anchor ended at.
        removed: candidates removed by each filter of `FILTERS`, summed over anchors.
        retrieved: candidates retrieved in all, at each anchor's final depth.
        search: how the neighbour search ran (`selectkit.neighbors.NeighborIndex.info`).
    """

    negatives: np.ndarray
    scores: np.ndarray
    found: np.ndarray
    padded: np.ndarray
    depth: np.ndarray
    removed: dict[str, int] = field(default_factory=dict)
    retrieved: int = 0
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> np.ndarray:
        """Anchors that kept fewer candidates than negatives asked for."""
        return self.found < self.negatives.shape[1]


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _keys(seed: int, anchors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Uniform uint64 keys of (seed, anchor, item) pairs, broadcast."""
    a = _mix(np.uint64(seed) ^ anchors.astype(np.uint64))
    return _mix(a ^ items.astype(np.uint64))


def scores_of(metric: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise scores of paired rows ``a[i]``, ``b[i]`` in the layer's convention turned similarity."""
    a = a.astype(np.float32, copy=False)
    b = b.astype(np.float32, copy=False)
    if metric == "cosine":
        na = np.linalg.norm(a, axis=1)
        nb = np.linalg.norm(b, axis=1)
        na[na == 0] = 1.0
        nb[nb == 0] = 1.0
        return np.einsum("ij,ij->i", a / na[:, None], b / nb[:, None]).astype(np.float32)
    if metric == "ip":
        return np.einsum("ij,ij->i", a, b).astype(np.float32)
    diff = a - b
    return -np.einsum("ij,ij->i", diff, diff).astype(np.float32)


def check_vectors(x: Any, name: str, setting: str, offset: int = 0) -> np.ndarray:
    """``x`` as a finite 2-D float32 array, or a one-line `ConfigError` naming ``setting`` (and the
    first bad row; ``offset`` is the row number of ``x[0]``, for a shard of a larger array)."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ConfigError(f"{setting}: {name} must be 2-D [items, dim] vectors, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{setting}: {name} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr.sum(dtype=np.float64)):
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise ConfigError(f"{setting}: {name} hold NaN or infinite values in {int(bad.sum())} rows (first: row {offset + int(np.flatnonzero(bad)[0])}); clean them first")
    return arr


def mine(
    anchor_vectors: np.ndarray,
    corpus_vectors: np.ndarray | ShardedArray,
    *,
    anchor_items: np.ndarray,
    corpus_items: np.ndarray,
    reference: np.ndarray,
    positive_keys: np.ndarray,
    n_items: int,
    settings: MiningSettings,
    seed: int,
    config: Any,
    anchor_labels: np.ndarray | None = None,
    corpus_labels: np.ndarray | None = None,
    setting: str = "selector",
    index: Any = None,
    comm: Comm | None = None,
    row_offset: int = 0,
) -> Mined:
    """Mine ``settings.negatives`` hard negatives per anchor from the corpus.

    Args:
        anchor_vectors: ``[m, d]`` vectors of the anchors.
        corpus_vectors: ``[c, d]`` vectors of the items negatives may come from, or this rank's shard
            of them (a `ShardedArray` over ``c`` rows): then every rank of ``comm`` calls `mine` with
            its own anchors, the corpus is searched with `selectkit.distributed.sharded_knn` (each
            rank's shard, the top candidates merged by (score, id)), and each rank gets its anchors'
            negatives, the same as one process would find.
        anchor_items: ``[m]`` item id of each anchor (an anchor is never its own negative).
        corpus_items: ``[c]`` item id of each corpus row (what the result lists), whole.
        reference: ``[m]`` the positive score each anchor's margins refer to.
        positive_keys: sorted int64 keys ``anchor_row * n_items + item`` of every (anchor, positive).
        n_items: bound on item ids (keys are formed with it).
        settings: the filters and how many to take.
        seed: seed of the random draws (from the caller's ``ctx.rng``).
        config: the `selectkit.neighbors.NeighborConfig` of the search (its metric sets the scores).
        anchor_labels, corpus_labels: labels for ``exclude_same_label``; None when there are none.
        setting: the config path errors name.
        index: a `selectkit.neighbors.NeighborIndex` already fitted on ``corpus_vectors`` with
            ``config`` (several calls against one corpus build it once); None: built here.
        comm: the ranks of a sharded corpus (None: a world of one).
        row_offset: the global row of ``anchor_vectors[0]`` among every rank's anchors (padding's
            draws are keyed by it).
    """
    s = settings
    m = anchor_vectors.shape[0]
    corpus = _Corpus(corpus_vectors, config, index, comm)
    if anchor_vectors.shape[1] != corpus.dim:
        raise ConfigError(f"{setting}: anchors have {anchor_vectors.shape[1]} dimensions but the corpus has {corpus.dim}; embed both in one space")
    c, comm = corpus.size, corpus.comm
    k = int(s.negatives)
    labelled = s.exclude_same_label and anchor_labels is not None and corpus_labels is not None
    neg = np.full((m, k), -1, dtype=np.int64)
    sc = np.full((m, k), -np.inf, dtype=np.float32)
    found = np.zeros(m, dtype=np.int64)
    depth_of = np.zeros(m, dtype=np.int64)
    removed = {name: 0 for name in FILTERS}
    retrieved = 0
    limit = min(max(int(s.max_depth), int(s.depth)), c)
    thresholds = _thresholds(s, reference)

    # every rank runs as many blocks and widenings as the busiest one, with no anchors where it has none
    for start in range(0, int(comm.all_max(-(-m // BLOCK))) * BLOCK, BLOCK):
        pending = np.arange(min(start, m), min(start + BLOCK, m))
        depth = min(int(s.depth), c)
        while int(comm.all_max(pending.size)):
            score, idx = corpus.search(anchor_vectors[pending], depth)
            valid = idx >= 0
            items = np.where(valid, corpus_items[np.maximum(idx, 0)], -1)
            alive, counts = _filter(s, pending, items, score, valid, anchor_items, positive_keys, n_items, thresholds, labelled, anchor_labels, corpus_labels, idx)
            rank = np.cumsum(alive, axis=1) - 1
            window = alive & (rank >= s.rank_min)
            if s.rank_max is not None:
                window &= rank < s.rank_max
            got = window.sum(axis=1)
            done = (got >= k) | (depth >= limit)
            rows = pending[done]
            for name, value in counts.items():
                removed[name] += int(value[done].sum())
            removed["rank_window"] += int((alive & ~window)[done].sum())
            retrieved += int(valid[done].sum())
            found[rows] = got[done]
            depth_of[rows] = depth
            cols = _choose(s, window[done], items[done], anchor_items[rows], seed)
            chosen = np.take_along_axis(items[done], cols, 1)
            chosen_scores = np.take_along_axis(score[done], cols, 1).astype(np.float32)
            missing = np.arange(k)[None, :] >= got[done][:, None]
            chosen[missing] = -1
            chosen_scores[missing] = -np.inf
            neg[rows], sc[rows] = chosen, chosen_scores
            pending = pending[~done]
            depth = min(depth * 2, limit)

    padded = np.zeros(m, dtype=np.int64)
    if s.on_short == "pad":
        _pad(neg, sc, padded, anchor_vectors, corpus, anchor_items, corpus_items, positive_keys, n_items, labelled, anchor_labels, corpus_labels, seed, setting, row_offset)
    return Mined(neg, sc, found, padded, depth_of, removed, retrieved, corpus.info())


class _Corpus:
    """The corpus `mine` searches: one `selectkit.neighbors.NeighborIndex` over whole vectors, or a
    rank's shard searched with the other ranks' through `selectkit.distributed.sharded_knn`.
    `search` gives similarities (larger is closer) and corpus rows; `rows` the vectors of corpus rows
    (a collective over a sharded corpus: every rank calls it)."""

    def __init__(self, vectors: np.ndarray | ShardedArray, config: Any, index: Any, comm: Comm | None) -> None:
        self.vectors, self.config = vectors, config
        self.sharded = isinstance(vectors, ShardedArray)
        self.comm = (comm or Comm.alone()) if self.sharded else Comm.alone()
        local = vectors.local if self.sharded else vectors
        self.size = vectors.n if self.sharded else local.shape[0]
        self.dim = local.shape[1]
        self.calls = 0
        if not self.sharded and index is None:
            from selectkit.neighbors import NeighborIndex

            index = NeighborIndex(config=config).fit(vectors)
        self.index = index

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores (similarities) and corpus rows of the ``depth`` nearest corpus items of each query."""
        self.calls += 1
        if self.sharded:
            dist, idx = sharded_knn(self.comm, queries, self.vectors, depth, config=self.config)
        else:
            dist, idx = self.index.search(queries, depth)
        return (-dist if self.config.metric == "l2" else dist), idx

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of corpus ``rows``."""
        if self.sharded:
            return fetch_rows(self.comm, self.vectors, rows, "hard negatives: padded items")
        return self.vectors[rows]

    def info(self) -> dict[str, Any]:
        """How the search ran: the index's `selectkit.neighbors.NeighborIndex.info`, or for a sharded
        corpus its size, backend, the ranks and the sharded searches this rank took part in."""
        if not self.sharded:
            return self.index.info()
        return {"n": int(self.size), "backend": self.config.backend, "sharded": True, "ranks": int(self.comm.world), "searches": int(self.calls)}


def _thresholds(s: MiningSettings, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Per-anchor upper bounds on a candidate's score, one per margin filter that is set."""
    ref = ref.astype(np.float64)
    out: dict[str, np.ndarray] = {}
    if s.absolute_margin is not None:
        out["absolute_margin"] = ref - float(s.absolute_margin)
    if s.relative_margin is not None:
        out["relative_margin"] = ref - np.abs(ref) * float(s.relative_margin)
    if s.false_negative_ratio is not None:
        out["false_negative"] = ref + np.abs(ref) * (float(s.false_negative_ratio) - 1.0)
    return out


def _filter(s, rows, items, score, valid, anchor_items, positive_keys, n_items, thresholds, labelled, anchor_labels, corpus_labels, idx):
    """The surviving candidates of ``rows`` and, per filter, how many each removed per row."""
    alive = valid.copy()
    counts: dict[str, np.ndarray] = {}

    def drop(name: str, cond: np.ndarray) -> None:
        hit = alive & cond
        counts[name] = hit.sum(axis=1)
        alive[hit] = False

    drop("self", items == anchor_items[rows][:, None])
    if positive_keys.size:
        keys = rows[:, None].astype(np.int64) * n_items + np.maximum(items, 0)
        pos = np.searchsorted(positive_keys, keys)
        pos = np.minimum(pos, positive_keys.size - 1)
        drop("positive", positive_keys[pos] == keys)
    if labelled:
        drop("same_label", corpus_labels[np.maximum(idx, 0)] == anchor_labels[rows][:, None])
    s64 = score.astype(np.float64)
    for name in ("absolute_margin", "relative_margin", "false_negative"):
        if name in thresholds:
            drop(name, s64 > thresholds[name][rows][:, None])
    if s.max_score is not None:
        drop("max_score", s64 > float(s.max_score))
    if s.min_score is not None:
        drop("min_score", s64 < float(s.min_score))
    return alive, counts


def _choose(s: MiningSettings, window: np.ndarray, items: np.ndarray, anchors: np.ndarray, seed: int) -> np.ndarray:
    """Columns of the chosen candidates per row, best first (columns are in score order)."""
    k = int(s.negatives)
    width = window.shape[1]
    if k > width:
        window = np.concatenate([window, np.zeros((window.shape[0], k - width), dtype=bool)], axis=1)
        items = np.concatenate([items, np.full((items.shape[0], k - width), -1, dtype=np.int64)], axis=1)
    if s.sampling == "top":
        order = np.argsort(~window, axis=1, kind="stable")[:, :k]
    else:
        key = _keys(seed, anchors[:, None], np.maximum(items, 0))
        key[~window] = _MASK
        order = np.argsort(key, axis=1, kind="stable")[:, :k]
        order = np.sort(order, axis=1)
        # rows with fewer than k in the window: the drawn ones first, then the padding columns
        inwin = np.take_along_axis(window, order, 1)
        order = np.take_along_axis(order, np.argsort(~inwin, axis=1, kind="stable"), 1)
    return np.minimum(order, width - 1)


def _pad(neg, sc, padded, anchor_vectors, corpus, anchor_items, corpus_items, positive_keys, n_items, labelled, anchor_labels, corpus_labels, seed, setting, row_offset) -> None:
    """Fill the missing negatives of short rows with random corpus items that are not excluded
    (not the anchor, not a positive, not of its label when labels are excluded, not already chosen),
    drawn by keyed hashes of the anchor's global row; then score them (one `_Corpus.rows` call)."""
    k = neg.shape[1]
    c = corpus_items.shape[0]
    filled: list[tuple[int, int, int]] = []
    error = None
    for row in np.flatnonzero((neg < 0).any(axis=1)):
        taken = set(int(x) for x in neg[row] if x >= 0)
        fill = [j for j in range(k) if neg[row, j] < 0]
        attempt = 0
        while fill and attempt < 64 * k + 64:
            draws = (_keys(seed ^ 0x5A5A, np.array([row_offset + row]), np.arange(attempt, attempt + 4 * k)) % np.uint64(c)).astype(np.int64)
            attempt += 4 * k
            for j in draws:
                item = int(corpus_items[j])
                if not fill:
                    break
                if item == int(anchor_items[row]) or item in taken:
                    continue
                if positive_keys.size:
                    key = row * n_items + item
                    p = min(int(np.searchsorted(positive_keys, key)), positive_keys.size - 1)
                    if positive_keys[p] == key:
                        continue
                if labelled and corpus_labels[j] == anchor_labels[row]:
                    continue
                slot = fill.pop(0)
                neg[row, slot] = item
                filled.append((int(row), slot, int(j)))
                taken.add(item)
                padded[row] += 1
        if fill:
            error = ConfigError(f"{setting}.on_short=pad: anchor row {row_offset + row} has too few items left to pad from (needs {len(fill)} more); use on_short=skip")
            break
    corpus.comm.agree(error, "hard negatives: padding")
    at = np.array(filled, dtype=np.int64).reshape(-1, 3)
    vectors = corpus.rows(at[:, 2])
    sc[at[:, 0], at[:, 1]] = scores_of(corpus.config.metric, anchor_vectors[at[:, 0]], vectors)
    # padded rows stay best first
    order = np.argsort(-sc, axis=1, kind="stable")
    neg[:] = np.take_along_axis(neg, order, 1)
    sc[:] = np.take_along_axis(sc, order, 1)


def neighbor_config(neighbors: Any, metric: str, setting: str) -> Any:
    """A `NeighborConfig` from None, a config or a mapping of its fields, with ``metric`` set."""
    from selectkit.neighbors import NeighborConfig

    if neighbors is None:
        base = NeighborConfig()
    elif isinstance(neighbors, NeighborConfig):
        base = neighbors
    elif hasattr(neighbors, "items"):
        fields = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in neighbors.items() if not str(k).startswith("_")}
        unknown = sorted(set(fields) - set(NeighborConfig.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"{setting}.neighbors.{unknown[0]} is not a neighbour setting; known: {', '.join(NeighborConfig.__dataclass_fields__)}")
        try:
            base = NeighborConfig(**fields)
        except ConfigError as err:
            raise ConfigError(f"{setting}.{err}") from None
    else:
        raise ConfigError(f"{setting}.neighbors must be a mapping of NeighborConfig fields or null, got {neighbors!r}")
    return replace(base, metric=metric)
