"""`knn` and `NeighborIndex`: exact or approximate k-nearest-neighbour search through one layer."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from selectkit.neighbors.backend import build_faiss_index, check_gpu_k, use_gpu
from selectkit.neighbors.config import NeighborConfig, effective, flat_precision, log_fallback, resolve
from selectkit.neighbors.inputs import as_float32, check_dims, check_k, l2_shift, normalized, shape_of, shares_input, shifted
from selectkit.neighbors.memory import check_cap, plan_blocks
from selectkit.neighbors.rescore import rescored, twin_groups

_builds = [0]
_builds_lock = threading.Lock()


def build_count() -> int:
    """How many indexes this process has built so far (one per `NeighborIndex.fit`, hence per `knn` call).

    Callers that search one base several times should build once; tests read this counter to check it.
    """
    return _builds[0]


class NeighborIndex(BaseEstimator):
    """An index built once over a base set and searched many times.

    `fit` does the work that depends on the base alone (the float32 copy, norms, IVF training and
    filing, the HNSW graph); every `search` or `kneighbors` afterwards only scans it, whatever its
    queries, so several query sets against one base need one `fit`.

    `search` returns the layer's convention (squared L2, or similarity for 'ip'/'cosine'). The
    scikit-learn methods (`fit`, `kneighbors`, `kneighbors_graph`, `get_params`, `set_params`)
    make it usable wherever scikit-learn or imbalanced-learn accept a neighbours object, e.g.
    ``SMOTE(k_neighbors=NeighborIndex(n_neighbors=6))`` (``n_neighbors`` counts the point itself there).

    An approximate backend over fewer than ``config.exact_below`` base points (at d=64; the bound
    scales with ``sqrt(64 / d)``, see `selectkit.neighbors.config.exact_threshold`) builds an exact
    index instead (faster at that size), logs it on the ``selectkit.neighbors`` logger, and says so
    in ``exact_fallback_``. An index made with ``self_join=True`` (searched against its own base, as
    `knn` without queries does) uses the self-join's crossover, ``config.exact_self_below``, instead.

    Parameters
    ----------
    n_neighbors:
        Default number of neighbours of `kneighbors`.
    config:
        `NeighborConfig` (None = exact L2 search on CPU).
    self_join:
        The index will be searched against its own base (``queries=None``): the exact fallback
        follows ``config.exact_self_below``.

    Attributes
    ----------
    backend_:
        The backend the index runs (``'flat'`` after a fallback).
    exact_fallback_:
        True when the configured approximate backend was replaced by exact search.
    precision_:
        ``'bf16'`` when exact searches against other queries run the certified bfloat16 pass
        (`selectkit.neighbors.lowp`: the same results as float32, faster on CPUs with bfloat16
        instructions), else ``'fp32'`` (self-searches always run float32).
    """

    def __init__(self, n_neighbors: int = 5, config: NeighborConfig | None = None, self_join: bool = False) -> None:
        self.n_neighbors = n_neighbors
        self.config = config
        self.self_join = self_join

    def fit(self, X: Any, y: Any = None) -> "NeighborIndex":
        """Build the index over ``X`` ``[n, d]`` (after checking the memory cap); returns ``self``."""
        configured = resolve(self.config)
        n, d = shape_of(X, "base")
        config, fallback = effective(configured, n, d, bool(self.self_join))
        check_cap(n, 0, d, 1, config, what="index")
        if fallback:
            log_fallback(configured, n, d, bool(self.self_join))
        base = as_float32(X, "base")
        if config.metric == "cosine":
            base = normalized(base)
        # L2 runs on rows centred on the base mean where that cuts float32 rounding (`l2_shift`)
        self._shift = l2_shift(base) if config.metric == "l2" else None
        if self._shift is not None:
            base = shifted(base, self._shift, in_place=not shares_input(base, X))
        self._config = config
        self._base = base
        self._twins = twin_groups(base)  # identical rows, which every search lists by ascending index
        self._gpu = use_gpu(config)
        self._layer = config.engine == "auto" and not self._gpu and config.backend in ("flat", "ivf")
        if self._layer and config.backend == "flat":
            from selectkit.neighbors.flat import FlatEngine

            self._engine: Any = FlatEngine(base, l2=config.metric == "l2", precision=flat_precision(config, d, n))
        elif self._layer:
            from selectkit.neighbors.backend import auto_nlist
            from selectkit.neighbors.ivf import IVFEngine

            l2 = config.metric == "l2"
            self._engine = IVFEngine(base, l2, auto_nlist(n, config), config.nprobe, config.train_size, config.seed)
        else:
            self._engine = build_faiss_index(base, config, self._gpu)
        self.n_samples_fit_ = n
        self.n_features_in_ = d
        self.backend_ = config.backend
        self.exact_fallback_ = fallback
        self.precision_ = getattr(self._engine, "precision", "fp32")
        with _builds_lock:
            _builds[0] += 1
        return self

    def info(self) -> dict[str, Any]:
        """How this index searches, for manifests: base size ``n``, the ``backend`` it runs, whether it
        fell back to exact search, the exact engine's ``precision``, and ``rechecked`` (queries the
        bfloat16 pass searched again in float32) with ``bf16_abandoned`` (searches it handed to
        float32 after their first blocks), both counted since `fit`."""
        self._check_fitted()
        return {
            "n": int(self.n_samples_fit_),
            "backend": self.backend_,
            "exact_fallback": bool(self.exact_fallback_),
            "precision": self.precision_,
            "rechecked": int(getattr(self._engine, "rechecked", 0)),
            "bf16_abandoned": int(getattr(self._engine, "abandoned", 0)),
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "_engine"):
            raise RuntimeError("NeighborIndex is not built yet; call fit(base) first")

    def search(self, queries: Any = None, k: int = 5, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Distances float32 ``[nq, k]`` and indices int64 ``[nq, k]``, best first.

        Whatever engine found them, the returned scores are computed by one function from the
        float32 inputs and each row is sorted by (score, index), ties by ascending index; identical
        base rows enter a row by ascending index, at the ``k``-th place too
        (`selectkit.neighbors.rescore`). ``queries=None`` searches the base itself; ``exclude_self``
        then drops each point's own index (or, when duplicates push it out of the list, the last
        entry of the sorted row).
        Approximate backends may return index ``-1`` (distance ``inf`` for 'l2', ``-inf`` otherwise)
        when they find fewer than ``k`` neighbours.
        """
        self._check_fitted()
        config = self._config
        n, d = self._base.shape
        if exclude_self and queries is not None:
            raise ValueError("exclude_self=True needs queries=None: a query's own point is only known when the queries are the base")
        k = check_k(k, n, exclude_self)
        want = k + 1 if exclude_self else k
        if self._gpu:
            check_gpu_k(want)
        if queries is None:
            check_cap(n, n, d, want, config)
            q = self._base
        else:
            nq, dq = shape_of(queries, "queries")
            check_dims(d, dq)
            check_cap(n, nq, d, want, config)
            q = as_float32(queries, "queries")
            if config.metric == "cosine":
                q = normalized(q)
            elif self._shift is not None:
                q = shifted(q, self._shift)
        if self._layer and config.backend == "ivf":
            blocks = plan_blocks(self._engine.largest_list, want, d, replace(config, backend="flat"))
        else:
            blocks = plan_blocks(n, want, d, config)
        if self._layer and config.backend == "flat" and queries is None:
            _, idx = self._engine.search_self(want, blocks)
        elif self._layer:
            _, idx = self._engine.search(q, want, blocks)
        else:
            _, idx = _faiss_search(self._engine, q, want, blocks.query)
        scores, idx = rescored(self._base, q, idx, config.metric == "l2", blocks.query, self._twins)
        return _drop_self(scores, idx) if exclude_self else (scores, idx)

    def kneighbors(self, X: Any = None, n_neighbors: int | None = None, return_distance: bool = True) -> Any:
        """scikit-learn's ``kneighbors``: ``(distances, indices)`` or ``indices``, nearest first.

        ``X=None`` returns the neighbours of the fitted points, each excluding itself. Distances
        follow scikit-learn (smaller is closer): Euclidean for 'l2', ``1 - similarity`` for
        'cosine', ``-inner product`` for 'ip'.
        """
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        dist, idx = self.search(X, k, exclude_self=X is None)
        if not return_distance:
            return idx
        metric = self._config.metric
        if metric == "l2":
            dist = np.sqrt(dist)
        elif metric == "cosine":
            dist = 1.0 - dist
        else:
            dist = -dist
        return dist.astype(np.float32, copy=False), idx

    def kneighbors_graph(self, X: Any = None, n_neighbors: int | None = None, mode: str = "connectivity") -> Any:
        """scikit-learn's ``kneighbors_graph``: a sparse ``[nq, n_samples_fit_]`` CSR matrix."""
        from scipy.sparse import csr_matrix

        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode={mode!r} must be 'connectivity' or 'distance'")
        dist, idx = self.kneighbors(X, n_neighbors, return_distance=True)
        nq, k = idx.shape
        keep = idx >= 0
        data = np.ones(int(keep.sum())) if mode == "connectivity" else dist[keep].astype(np.float64)
        rows = np.repeat(np.arange(nq), k).reshape(nq, k)[keep]
        return csr_matrix((data, (rows, idx[keep])), shape=(nq, self.n_samples_fit_))


def knn(
    base: Any,
    queries: Any = None,
    *,
    k: int,
    config: NeighborConfig | None = None,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest base points of each query: ``(distances float32 [nq, k], indices int64 [nq, k])``.

    ``queries=None`` searches the base against itself; ``exclude_self=True`` then leaves each point
    out of its own list. Distances are squared L2 for ``metric='l2'`` (ascending) and similarities
    for 'ip' and 'cosine' (descending). The memory cap is checked for the whole job before the
    index is built. An approximate backend over fewer base points than its measured crossover
    (``config.exact_below``, or ``config.exact_self_below`` without queries; see `NeighborIndex`)
    runs exact search instead.
    """
    config = resolve(config)
    n, d = shape_of(base, "base")
    if queries is None:
        nq, dq = n, d
    else:
        nq, dq = shape_of(queries, "queries")
        check_dims(d, dq)
    if exclude_self and queries is not None:
        raise ValueError("exclude_self=True needs queries=None: a query's own point is only known when the queries are the base")
    kk = check_k(k, n, exclude_self)
    # the cap is checked for the search that will run (after the exact fallback, if any)
    check_cap(n, nq, d, kk + 1 if exclude_self else kk, effective(config, n, d, queries is None)[0])
    index = NeighborIndex(n_neighbors=kk, config=config, self_join=queries is None)
    return index.fit(base).search(queries, kk, exclude_self=exclude_self)


def _faiss_search(index: Any, queries: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search block by block into preallocated ``[nq, k]`` arrays."""
    nq = queries.shape[0]
    scores = np.empty((nq, k), dtype=np.float32)
    idx = np.empty((nq, k), dtype=np.int64)
    for i in range(0, nq, block):
        scores[i : i + block], idx[i : i + block] = index.search(queries[i : i + block], k)
    return scores, idx


def _drop_self(scores: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from ``k + 1`` results (or its last entry when it is absent)."""
    nq, width = idx.shape
    drop = idx == np.arange(nq)[:, None]
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    return scores[keep].reshape(nq, width - 1), idx[keep].reshape(nq, width - 1)
