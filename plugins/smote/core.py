"""The resampling algorithms, shared by the selectors and the scikit-learn style estimators.

Everything here works on a feature matrix ``X`` (``[n, d]``), the class position of each row
(``codes``, see `strategy.class_counts`) and a plan ``{class position: n}`` from
`strategy.resolve_strategy`. Over-samplers return a `Drawn`: for each new sample its two parents (rows of
``X``) and its interpolation factor; `interpolate` turns that into features block by block. Neighbour
search goes through a `NeighborSource`, by default selectkit's neighbour layer.

Seeds are spread over a class's points as evenly as possible (every point seeds ``g // n`` samples and
``g % n`` distinct random points seed one more), as in the SMOTE paper's "N% per sample" procedure;
ADASYN spreads them in proportion to each point's hardness instead.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
from numba import njit

from selectkit.errors import ConfigError

BLOCK_ROWS = 1 << 16  # rows interpolated (and checked for NaN) per block: bounds temporaries to ~block*d
KERNEL_ROWS = 1 << 14  # rows per task of the compiled interpolation


@dataclass(frozen=True)
class Names:
    """How errors refer to the settings and the data (``selector.k_neighbors`` vs ``SMOTE.k_neighbors``)."""

    prefix: str = "selector"
    data: str = "data: features"
    classes: np.ndarray | None = None

    def setting(self, key: str) -> str:
        """The full name of parameter ``key``."""
        return f"{self.prefix}.{key}"

    def key(self, code: int) -> Any:
        """The user's label of class position ``code`` as a plain Python value (for metadata)."""
        if self.classes is None:
            return int(code)
        c = self.classes[code]
        return c.item() if isinstance(c, np.generic) else c

    def label(self, code: int) -> str:
        """The user's label of class position ``code``."""
        if self.classes is None:
            return str(code)
        c = self.classes[code]
        return repr(c.item() if isinstance(c, np.generic) else c)


@dataclass
class Drawn:
    """Synthetic samples before their features are computed.

    Attributes:
        parents: int64 ``[m, 2]``: rows of ``X`` (seed, neighbour); ``x = x[p0] + lam * (x[p1] - x[p0])``.
        lam: float32 ``[m]`` in ``[0, 1)``.
        codes: int64 ``[m]``: class position of each new sample (the seed's class).
        meta: per-run facts worth reporting (e.g. classes without danger points).
    """

    parents: np.ndarray
    lam: np.ndarray
    codes: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# input checks


def check_matrix(X: Any, names: Names, offset: int = 0) -> np.ndarray:
    """``X`` as a numeric ``[n, d]`` array (float dtype kept, others made float64); `ConfigError` otherwise.

    Rejects non-numeric dtypes and NaN/inf values, naming ``names.data`` and the first bad row
    (``offset`` is the row number of ``X[0]``, for a shard of a larger array). The finiteness check
    is `all_finite`: one pass, no temporary the size of ``X``.
    """
    arr = np.asarray(X)
    if arr.dtype.kind not in "fiub":
        raise ConfigError(f"{names.data} must be numeric, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ConfigError(f"{names.data} must have one row per sample ([n, d]), got shape {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if arr.dtype.kind != "f":
        return arr.astype(np.float64)
    if not all_finite(arr):
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        rows = f"{bad.size} row{'s' if bad.size != 1 else ''} hold{'s' if bad.size == 1 else ''}"
        raise ConfigError(f"{names.data} must be finite: {rows} NaN or inf (first: row {offset + int(bad[0])}); clean or impute them first")
    return arr


def all_finite(arr: np.ndarray) -> bool:
    """Whether every value of the float ``[n, d]`` array ``arr`` is finite.

    The whole array is summed first (numpy's pairwise sum, one pass, no temporary): a NaN or inf
    anywhere makes the sum NaN or inf, so a finite sum proves every value finite (8x
    ``np.isfinite(...).all()`` at 100k x 32). Only when the sum is not finite (a bad value, or finite
    values whose sum overflows) are the values checked one by one, block by block. (A BLAS product
    with a vector of ones is as fast, but leaves OpenBLAS's threads spinning into the search that
    follows.)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(arr, axis=None)):
            return True
    for start in range(0, arr.shape[0], BLOCK_ROWS):
        if not np.isfinite(arr[start : start + BLOCK_ROWS]).all():
            return False
    return True


def as_search_matrix(X: np.ndarray) -> np.ndarray:
    """float32 C-contiguous view or copy of ``X``, what the neighbour layer searches."""
    return np.ascontiguousarray(X, dtype=np.float32)


def check_labels(y: Any, n: int, names: Names, what: str = "data: labels") -> np.ndarray:
    """``y`` as a 1-D array of ``n`` labels; `ConfigError` on a wrong shape."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ConfigError(f"{what} must be a 1-D array with one label per sample ({n}), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what} must be finite, found NaN or inf")
    return arr


# ---------------------------------------------------------------------------------------------------
# neighbour search


class FittedNeighbors(Protocol):
    """A neighbour search built over one base, queried any number of times."""

    def __call__(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """int64 ``[len(rows), k]``: the ``k`` nearest base rows of base rows ``rows`` (all rows when
        None), each other than itself, nearest first."""


class NeighborSource(Protocol):
    """Builds a `FittedNeighbors` over a base; ``source(base, k, rows)`` builds and queries once."""

    def fit(self, base: np.ndarray, self_join: bool = False) -> FittedNeighbors:
        """The search over ``base`` (float32 ``[n, d]``), built once; ``self_join``: it will be asked
        for every base row's neighbours (``rows=None``), which may choose a faster search."""

    def __call__(self, base: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """``fit(base)(k, rows)``."""


def drop_self(idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Remove each row's own index from ``k + 1`` neighbours (or the farthest one, if it is absent)."""
    keep = idx != rows[:, None]
    keep[keep.all(axis=1), -1] = False
    return idx[keep].reshape(idx.shape[0], idx.shape[1] - 1)


def fill_missing(idx: np.ndarray, names: Names) -> np.ndarray:
    """Replace the ``-1`` an approximate index returns for missing neighbours by the row's nearest one."""
    missing = idx < 0
    if not missing.any():
        return idx
    if missing[:, 0].any():
        raise ConfigError(
            f"{names.setting('neighbors')}: the approximate search found no neighbour for "
            f"{int(missing[:, 0].sum())} points; raise nprobe/ef_search or use exact search"
        )
    return np.where(missing, idx[:, :1], idx)


class LayerNeighbors:
    """Neighbour search through a `selectkit.neighbors.NeighborIndex` with a given `NeighborConfig`."""

    def __init__(self, config: Any = None, names: Names = Names()) -> None:
        self.config = config
        self.names = names

    def fit(self, base: np.ndarray, self_join: bool = False) -> "LayerFitted":
        """One `NeighborIndex` over ``base`` (with the self-join's exact fallback when ``self_join``)."""
        from selectkit.neighbors import NeighborIndex

        with renamed(self.names):
            index = NeighborIndex(config=self.config, self_join=self_join).fit(base)
        return LayerFitted(index, base, self.names)

    def __call__(self, base: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        return self.fit(base, self_join=rows is None)(k, rows)


class LayerFitted:
    """A built `NeighborIndex` with the base it indexes; ``index`` tells how it searches (e.g. its exact fallback)."""

    def __init__(self, index: Any, base: np.ndarray, names: Names) -> None:
        self.index = index
        self.base = base
        self.names = names

    @property
    def info(self) -> dict[str, Any]:
        """How this search runs (`selectkit.neighbors.NeighborIndex.info`): base size, the backend the
        index runs, whether it fell back to exact search, its precision."""
        return self.index.info()

    def __call__(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        with renamed(self.names):
            if rows is None:
                _, idx = self.index.search(None, k, exclude_self=True)
            else:
                _, idx = self.index.search(self.base[rows], k + 1)
                idx = drop_self(np.asarray(idx, dtype=np.int64), rows)
        return fill_missing(np.asarray(idx, dtype=np.int64), self.names)


class EstimatorNeighbors:
    """Neighbour search through any object with scikit-learn's ``fit`` / ``kneighbors`` API.

    The object is copied before each fit (the caller's instance is never refitted). Its
    ``n_neighbors`` counts the query point itself, as in imbalanced-learn: ``k = n_neighbors - 1``.
    """

    def __init__(self, prototype: Any, names: Names = Names()) -> None:
        self.prototype = prototype
        self.names = names

    @property
    def k(self) -> int | None:
        """The ``k`` the object implies, when it carries ``n_neighbors``."""
        n = getattr(self.prototype, "n_neighbors", None)
        return int(n) - 1 if isinstance(n, (int, np.integer)) and not isinstance(n, bool) else None

    def _fresh(self) -> Any:
        if hasattr(self.prototype, "get_params"):
            from sklearn.base import clone

            try:
                return clone(self.prototype)
            except Exception:
                pass
        return copy.deepcopy(self.prototype)

    def fit(self, base: np.ndarray, self_join: bool = False) -> "EstimatorFitted":
        """A fresh copy of the object, fitted on ``base`` (``self_join`` does not change it)."""
        est = self._fresh()
        est.fit(base)
        return EstimatorFitted(est, base, self.names)

    def __call__(self, base: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        return self.fit(base)(k, rows)


class EstimatorFitted:
    """A fitted scikit-learn style neighbours object with the base it was fitted on."""

    def __init__(self, estimator: Any, base: np.ndarray, names: Names) -> None:
        self.estimator = estimator
        self.base = base
        self.names = names

    def __call__(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        rows_ = np.arange(self.base.shape[0], dtype=np.int64) if rows is None else rows
        queries = self.base if rows is None else self.base[rows]
        out = self.estimator.kneighbors(queries, n_neighbors=k + 1, return_distance=False)
        idx = np.asarray(out[1] if isinstance(out, tuple) else out, dtype=np.int64)
        return fill_missing(drop_self(idx, rows_), self.names)


def neighbor_source(neighbors: Any, k_neighbors: Any, names: Names) -> tuple[NeighborSource, int]:
    """The search to use and ``k``: from an object with ``kneighbors``, or from an int and a config."""
    if hasattr(k_neighbors, "kneighbors"):
        source = EstimatorNeighbors(k_neighbors, names)
        return source, source.k if source.k is not None else 5
    return LayerNeighbors(make_config(neighbors, names), names), int(k_neighbors)


def make_config(neighbors: Any, names: Names) -> Any:
    """A `NeighborConfig` from None (defaults), a config, or a mapping of its fields."""
    from selectkit.neighbors import NeighborConfig

    if neighbors is None:
        return NeighborConfig()
    if isinstance(neighbors, NeighborConfig):
        return neighbors
    if not isinstance(neighbors, Mapping):
        raise ConfigError(f"{names.setting('neighbors')} must be a mapping of NeighborConfig fields or null, got {neighbors!r}")
    # Hydra's own keys (``_target_`` of a ``neighbors`` group node) are not settings
    fields = {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in neighbors.items() if not str(k).startswith("_")}
    unknown = sorted(set(fields) - set(NeighborConfig.__dataclass_fields__))
    if unknown:
        known = ", ".join(NeighborConfig.__dataclass_fields__)
        raise ConfigError(f"{names.setting('neighbors')}.{unknown[0]} is not a neighbour setting; known: {known}")
    with renamed(names):
        return NeighborConfig(**fields)


class renamed:
    """Context manager re-raising the neighbour layer's ``neighbors.<field>`` errors under this
    resampler's own path (``selector.neighbors.<field>``, ``SMOTE.neighbors.<field>``)."""

    def __init__(self, names: Names) -> None:
        self.names = names

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if isinstance(err, ConfigError) and str(err).startswith("neighbors."):
            raise type(err)(f"{self.names.prefix}.{err}") from None
        return False


# ---------------------------------------------------------------------------------------------------
# allocation and drawing


def class_members(codes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Rows of each class, ascending, from one stable sort."""
    order = np.argsort(codes, kind="stable").astype(np.int64)
    bounds = np.cumsum(np.bincount(codes, minlength=n_classes))[:-1]
    return np.split(order, bounds)


def even_counts(n: int, g: int, rng: np.random.Generator | None, keys: np.ndarray | None = None) -> np.ndarray:
    """How many samples each of ``n`` seeds makes so that ``g`` are made in all, as evenly as possible.

    The ``g % n`` seeds that make one more are drawn from ``rng``, or, with ``keys`` (one random
    number per seed), are the seeds with the smallest keys."""
    per, rest = divmod(int(g), int(n))
    counts = np.full(n, per, dtype=np.int64)
    if rest:
        counts[rng.choice(n, size=rest, replace=False) if keys is None else np.argsort(keys, kind="stable")[:rest]] += 1
    return counts


def proportional_counts(weights: np.ndarray, g: int, rng: np.random.Generator | None, keys: np.ndarray | None = None) -> np.ndarray:
    """Split ``g`` over integer ``weights`` in proportion (largest remainders, ties broken at random:
    by ``rng``, or by ``keys``, one random number per weight)."""
    w = weights.astype(np.int64)
    total = int(w.sum())
    scaled = w * np.int64(g)
    counts = scaled // total
    rest = int(g - counts.sum())
    if rest:
        order = np.lexsort((rng.random(w.size) if keys is None else keys, -(scaled % total)))
        counts[order[:rest]] += 1
    return counts


def _pick(nn: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeds (repeated per ``counts``) and, for each, one of its ``k`` neighbours at random."""
    seeds = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    cols = rng.integers(0, nn.shape[1], size=seeds.size)
    return seeds, nn[seeds, cols]


def check_sizes(method: str, counts: np.ndarray, plan: Mapping[int, int], k: int, m: int, names: Names) -> None:
    """Refuse, before any work, classes too small for ``k`` (and ``m``) neighbours."""
    n_total = int(counts.sum())
    if method in ("borderline-1", "borderline-2"):
        if n_total < m + 1:
            raise ConfigError(f"{names.setting('m_neighbors')}={m} needs at least {m + 1} samples, the data has {n_total}")
    for c, g in plan.items():
        if g <= 0:
            continue
        n_c = int(counts[c])
        need = k + 1
        if method == "borderline-2":
            if n_total < need:
                raise ConfigError(f"{names.setting('k_neighbors')}={k} needs at least {need} samples, the data has {n_total}")
            continue
        if n_c < need:
            raise ConfigError(
                f"{names.setting('k_neighbors')}={k} needs at least {need} samples in every class it over-samples; "
                f"class {names.label(c)} has {n_c} (lower k_neighbors or leave that class out of sampling_strategy)"
            )


@dataclass(frozen=True)
class NeighborRows:
    """The neighbour lists of the queries ``[start, stop)`` of ``total``: ``idx`` int64
    ``[stop - start, k]``, nearest first; ``whole`` when every process holds every query's lists
    (else each holds the run of a sharded search's queries it asked for)."""

    start: int
    stop: int
    total: int
    idx: np.ndarray
    whole: bool = True


class Sequential:
    """Draws from one generator over whole neighbour lists: the single-process way (the estimators,
    and classes a sharded selector gathers), the same on every rank that holds the same lists."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def even(self, n: int, g: int, seeds: np.ndarray) -> np.ndarray:
        """`even_counts` of ``g`` samples over ``n`` seeds (pool positions ``seeds``)."""
        return even_counts(n, g, self.rng)

    def proportional(self, weights: np.ndarray, g: int, seeds: np.ndarray) -> np.ndarray:
        """`proportional_counts` of ``g`` samples over the seeds' ``weights``."""
        return proportional_counts(weights, g, self.rng)

    def pick(self, data: "Data", nn: NeighborRows, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each new sample's seed (a query of ``nn``), its neighbour (an entry of the seed's list),
        and its interpolation factor in ``[0, 1)``; whole, in seed order."""
        seeds, near = _pick(data.whole(nn).idx, counts, self.rng)
        return seeds, near, self.rng.random(seeds.size, dtype=np.float32)


class Data:
    """The rows `draw` works on and how it searches them (whole here: the estimators' ``X``).

    Subclasses change where rows live (`selectkit_plugins.smote.sharded.ShardedData`); every search
    is recorded in ``searches`` for ``meta['neighbors']``.
    """

    def __init__(self, X: np.ndarray, source: NeighborSource) -> None:
        self.X = X
        self.source = source
        self.searches: list[dict[str, Any]] = []
        self._all: FittedNeighbors | None = None

    def fit(self, name: Any, base: np.ndarray, self_join: bool = False) -> FittedNeighbors:
        """``source`` fitted on ``base``, its search recorded under ``name``."""
        fitted = self.source.fit(base, self_join)
        info = getattr(fitted, "info", None)
        if info is not None:
            self.searches.append({"base": name, **info})
        return fitted

    def keyed(self, n: int) -> bool:
        """Whether a class of ``n`` members draws with `keyed_draws` instead of the generator."""
        return False

    def keyed_draws(self, code: int) -> Any:  # pragma: no cover - only where `keyed` can be True
        raise NotImplementedError

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The float32 rows at ``rows`` (sorted positions), whole."""
        return self.X[rows]

    def within(self, name: Any, rows: np.ndarray, k: int, queries: np.ndarray | None = None, keyed: bool = False) -> NeighborRows:
        """The ``k`` nearest of the rows ``rows`` (a class's members) to ``rows[queries]`` (all when
        None), each other than itself, as indices into ``rows``."""
        idx = self.fit(name, self.rows(rows), queries is None)(k, queries)
        total = rows.size if queries is None else queries.size
        return NeighborRows(0, total, total, idx)

    def around(self, rows: np.ndarray, k: int) -> NeighborRows:
        """The ``k`` nearest rows of all the data to the rows ``rows`` (sorted positions), each other
        than itself, as positions."""
        if self._all is None:
            self._all = self.fit("all", self.X)
        return NeighborRows(0, rows.size, rows.size, self._all(k, rows))

    def gather(self, part: NeighborRows, values: np.ndarray) -> np.ndarray:
        """Per-query ``values`` of the queries ``part`` holds, for every query of its search."""
        return values

    def whole(self, part: NeighborRows) -> NeighborRows:
        """Every query's neighbour lists of the search ``part`` belongs to."""
        return part


def draw(
    method: str,
    X: np.ndarray | Data,
    codes: np.ndarray,
    plan: Mapping[int, int],
    rng: np.random.Generator,
    source: NeighborSource | None = None,
    *,
    k: int,
    m: int = 10,
    names: Names = Names(),
) -> Drawn:
    """Parents and interpolation factors for ``method`` in ``smote``, ``borderline-1``, ``borderline-2``,
    ``adasyn``, following ``plan`` (class position -> samples to create).

    ``X`` is the float32 search matrix, searched through ``source``, or a `Data` that holds the rows
    and their searches (e.g. a sharded pool's). Classes are handled in ascending order and every
    per-sample step is vectorised. Each distinct base is indexed once: all of the data (the danger
    and hardness neighbours over every class, and borderline-2's seed neighbours) on first use,
    shared by every class, and each class's own rows once for that class's same-class neighbours.
    ``meta['neighbors']`` lists each search (``base``: ``'all'`` or the class, ``n``, the
    ``backend`` it ran, ...). Draws come from ``rng`` (`Sequential`), except in classes ``data``
    draws keyed (`Data.keyed`).
    """
    data = X if isinstance(X, Data) else Data(X, source)
    n_classes = int(codes.max()) + 1 if codes.size else 0
    counts = np.bincount(codes, minlength=n_classes)
    check_sizes(method, counts, plan, k, m, names)
    members = class_members(codes, n_classes)
    sequential = Sequential(rng)
    parents, lams, labels = [], [], []
    meta: dict[str, Any] = {}

    def other_counts(rows: np.ndarray, j: int, c: int) -> np.ndarray:
        """How many of each row's ``j`` nearest rows (any class) are of another class than ``c``."""
        part = data.around(rows, j)
        return data.gather(part, (codes[part.idx] != c).sum(axis=1))

    for c in sorted(plan):
        g = int(plan[c])
        if g <= 0:
            continue
        rows = members[c]
        keyed = data.keyed(rows.size)
        draws = data.keyed_draws(c) if keyed else sequential
        if method == "smote":
            nn = data.within(names.key(c), rows, k, keyed=keyed)
            seeds, near, lam = draws.pick(data, nn, draws.even(rows.size, g, rows))
            p0, p1 = rows[seeds], rows[near]
        elif method in ("borderline-1", "borderline-2"):
            other = other_counts(rows, m, c)
            danger = np.flatnonzero((2 * other >= m) & (other < m))
            meta.setdefault("danger", {})[names.key(c)] = int(danger.size)
            meta.setdefault("noise", {})[names.key(c)] = int((other == m).sum())
            if danger.size == 0:
                meta.setdefault("no_danger", []).append(names.key(c))
                warnings.warn(
                    f"{names.prefix}: class {names.label(c)} has no point in danger (borderline), so borderline SMOTE creates none for it",
                    stacklevel=3,
                )
                continue
            if method == "borderline-1":
                nn = data.within(names.key(c), rows, k, queries=danger, keyed=keyed)
                seeds, near, lam = draws.pick(data, nn, draws.even(danger.size, g, rows[danger]))
                p0, p1 = rows[danger[seeds]], rows[near]
            else:
                seeds, near, lam = draws.pick(data, data.around(rows[danger], k), draws.even(danger.size, g, rows[danger]))
                p0, p1 = rows[danger[seeds]], near
                lam[codes[p1] != c] *= np.float32(0.5)
        elif method == "adasyn":
            hard = other_counts(rows, k, c)
            meta.setdefault("hardness", {})[names.key(c)] = float(hard.mean() / k)
            if hard.sum() == 0:
                meta.setdefault("no_hard", []).append(names.key(c))
                warnings.warn(
                    f"{names.prefix}: no point of class {names.label(c)} has a neighbour of another class; ADASYN spreads its samples evenly",
                    stacklevel=3,
                )
                alloc = draws.even(rows.size, g, rows)
            else:
                alloc = draws.proportional(hard, g, rows)
            seeds, near, lam = draws.pick(data, data.within(names.key(c), rows, k, keyed=keyed), alloc)
            p0, p1 = rows[seeds], rows[near]
        else:  # pragma: no cover - guarded by callers
            raise ValueError(f"unknown method {method!r}")
        parents.append(np.stack([p0, p1], axis=1))
        lams.append(lam)
        labels.append(np.full(seeds.size, c, dtype=np.int64))
    if data.searches:
        meta["neighbors"] = data.searches
    if not parents:
        return Drawn(np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64), meta)
    return Drawn(
        np.concatenate(parents).astype(np.int64, copy=False),
        np.concatenate(lams),
        np.concatenate(labels),
        meta,
    )


def interpolate(X: np.ndarray, parents: np.ndarray, lam: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X[p0] + lam * (X[p1] - X[p0])`` for every parent pair, in ``X``'s dtype.

    The arithmetic is exactly that expression's (same operations, same order, same dtype, no fused
    multiply-add), so the result equals it bit for bit. ``out`` (``[m, d]``, e.g. a slice of a
    preallocated result) is filled in place when given. Float32 and float64 data go through a compiled
    kernel that reads each parent row once and writes each output row once, on as many threads as
    torch uses; other dtypes through numpy, block by block.
    """
    m = parents.shape[0]
    if out is None:
        out = np.empty((m, X.shape[1]), dtype=X.dtype)
    lam = lam.astype(X.dtype, copy=False)
    if X.dtype in (np.float32, np.float64) and out.dtype == X.dtype and m:
        from selectkit.neighbors.flat import run_workers, task_source

        p0 = np.ascontiguousarray(parents[:, 0])
        p1 = np.ascontiguousarray(parents[:, 1])
        next_start = task_source(range(0, m, KERNEL_ROWS))

        def worker() -> None:
            while (start := next_start()) is not None:
                stop = min(start + KERNEL_ROWS, m)
                _interpolate_rows(X, p0[start:stop], p1[start:stop], lam[start:stop], out[start:stop])

        run_workers(worker, -(-m // KERNEL_ROWS))
        return out
    for start in range(0, m, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, m)
        o = out[start:stop]
        seed = X[parents[start:stop, 0]]
        np.take(X, parents[start:stop, 1], axis=0, out=o)
        o -= seed
        o *= lam[start:stop, None]
        o += seed
    return out


@njit(nogil=True, cache=True)
def _interpolate_rows(X: np.ndarray, p0: np.ndarray, p1: np.ndarray, lam: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = (X[p1[i]] - X[p0[i]]) * lam[i] + X[p0[i]]``, each operation rounded in ``X``'s dtype."""
    d = X.shape[1]
    for i in range(p0.shape[0]):
        a, b, t = p0[i], p1[i], lam[i]
        for j in range(d):
            x0 = X[a, j]
            out[i, j] = (X[b, j] - x0) * t + x0


def random_over(codes: np.ndarray, plan: Mapping[int, int], rng: np.random.Generator) -> np.ndarray:
    """Rows to duplicate: for each class, ``plan[c]`` of its rows drawn with replacement."""
    n_classes = int(codes.max()) + 1
    members = class_members(codes, n_classes)
    extra = [members[c][rng.integers(0, members[c].size, size=int(g))] for c, g in sorted(plan.items()) if g > 0]
    return np.concatenate(extra).astype(np.int64) if extra else np.zeros(0, np.int64)


def random_under(codes: np.ndarray, plan: Mapping[int, int], rng: np.random.Generator) -> np.ndarray:
    """Rows to keep, ascending: ``plan[c]`` rows of each named class drawn without replacement, all others."""
    n_classes = int(codes.max()) + 1
    members = class_members(codes, n_classes)
    keep = np.ones(codes.size, dtype=bool)
    for c, target in sorted(plan.items()):
        rows = members[c]
        if target < rows.size:
            keep[rows] = False
            keep[rows[rng.choice(rows.size, size=int(target), replace=False)]] = True
    return np.flatnonzero(keep).astype(np.int64)
