"""imbalanced-learn compatible resamplers backed by the same code as the selectors.

Each class follows scikit-learn's conventions: a keyword-only constructor that only stores parameters,
parameters checked in `fit_resample`, results in trailing-underscore attributes, `get_params` /
`set_params` / `clone` from `BaseEstimator`. They drop into ``imblearn.pipeline.Pipeline``.

Common attributes after `fit_resample`:
    sampling_strategy_: ``{class: n}``: samples created per class (over-samplers) or kept (under-sampler).
    synthetic_parents_: int64 ``[m, 2]`` rows of ``X`` each new sample was made from (over-samplers).
    synthetic_lam_: float32 ``[m]``: ``X_new = X[p0] + lam * (X[p1] - X[p0])`` (over-samplers).
    sample_indices_: rows of ``X`` behind each output row (random over- and under-sampling).
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from selectkit.errors import ConfigError
from selectkit_plugins.smote import core
from selectkit_plugins.smote.strategy import OVER, UNDER, class_counts, is_strategy, resolve_strategy


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _rng(random_state: Any, where: str) -> np.random.Generator:
    if random_state is None or (isinstance(random_state, (Integral, np.random.Generator)) and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise ConfigError(f"{where}.random_state must be None, an int or a numpy Generator/RandomState, got {random_state!r}")


class _Resampler(BaseEstimator):
    """``fit_resample`` validates, resolves the strategy, runs ``_resample`` and stores the results."""

    _kind = OVER

    def fit(self, X: Any, y: Any) -> "_Resampler":
        """Resample once (results in the trailing-underscore attributes) and return ``self``."""
        self.fit_resample(X, y)
        return self

    def fit_resample(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(X_resampled, y_resampled)``: originals first (over-sampling), then new samples."""
        names = core.Names(type(self).__name__, "X")
        self._check_params(names)
        X = self._check_X(X, names)
        y = core.check_labels(y, X.shape[0], names, what="y")
        classes, codes, counts = class_counts(y)
        names = core.Names(type(self).__name__, "X", classes)
        plan = resolve_strategy(self.sampling_strategy, classes, counts, self._kind, names.setting("sampling_strategy"), y)
        rng = _rng(self.random_state, type(self).__name__)
        X_res, y_res, attrs = self._resample(X, y, classes, codes, plan, rng, names)
        attrs["sampling_strategy_"] = {_plain(classes[c]): int(n) for c, n in plan.items()}
        for key, value in attrs.items():
            setattr(self, key, value)
        return X_res, y_res

    def _check_X(self, X: Any, names: core.Names) -> np.ndarray:
        return core.check_matrix(X, names)

    def _check_params(self, names: core.Names) -> None:
        if not is_strategy(self.sampling_strategy):
            raise ConfigError(f"{names.setting('sampling_strategy')} must be a float in (0, 1], a dict, a callable or a strategy name, got {self.sampling_strategy!r}")

    def _resample(self, X, y, classes, codes, plan, rng, names):  # pragma: no cover - interface
        raise NotImplementedError


class _Interpolating(_Resampler):
    _method = "smote"

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None, k_neighbors: Any = 5, neighbors: Any = None) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.k_neighbors = k_neighbors
        self.neighbors = neighbors

    def _check_params(self, names: core.Names) -> None:
        super()._check_params(names)
        k = self.k_neighbors
        if not hasattr(k, "kneighbors") and (isinstance(k, bool) or not isinstance(k, Integral) or k < 1):
            raise ConfigError(f"{names.setting('k_neighbors')} must be an integer >= 1 or an object with kneighbors, got {k!r}")

    def _draw_kwargs(self) -> dict[str, Any]:
        return {}

    def _method_name(self) -> str:
        return self._method

    def _resample(self, X, y, classes, codes, plan, rng, names):
        source, k = core.neighbor_source(self.neighbors, self.k_neighbors, names)
        search = core.as_search_matrix(X)
        drawn = core.draw(self._method_name(), search, codes, plan, rng, source, k=k, names=names, **self._draw_kwargs())
        n, m = X.shape[0], drawn.lam.size
        X_res = np.empty((n + m, X.shape[1]), dtype=X.dtype)
        X_res[:n] = X
        core.interpolate(X, drawn.parents, drawn.lam, out=X_res[n:])
        y_res = np.concatenate([y, classes[drawn.codes]])
        return X_res, y_res, {"synthetic_parents_": drawn.parents, "synthetic_lam_": drawn.lam, "resample_info_": drawn.meta}


class SMOTE(_Interpolating):
    """SMOTE over-sampling (Chawla et al., 2002).

    Args:
        sampling_strategy: float (binary), dict ``{class: target count}``, strategy name or callable.
        random_state: None, int or numpy Generator.
        k_neighbors: neighbours per seed (int), or an object with ``fit`` / ``kneighbors`` whose
            ``n_neighbors`` counts the point itself (e.g. a ``NeighborIndex`` or ``NearestNeighbors``).
        neighbors: `NeighborConfig` or a dict of its fields, for the default (FAISS) search.
    """

    _method = "smote"


class ADASYN(_Interpolating):
    """ADASYN over-sampling (He et al., 2008): seeds weighted by the share of other-class neighbours."""

    _method = "adasyn"


class BorderlineSMOTE(_Interpolating):
    """Borderline-SMOTE (Han et al., 2005): only minority points in danger seed new samples.

    Args:
        m_neighbors: neighbours (any class) of the danger test.
        kind: ``'borderline-1'`` or ``'borderline-2'``.
        (others as `SMOTE`)
    """

    def __init__(
        self,
        *,
        sampling_strategy: Any = "auto",
        random_state: Any = None,
        k_neighbors: Any = 5,
        m_neighbors: int = 10,
        kind: str = "borderline-1",
        neighbors: Any = None,
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy, random_state=random_state, k_neighbors=k_neighbors, neighbors=neighbors)
        self.m_neighbors = m_neighbors
        self.kind = kind

    def _check_params(self, names: core.Names) -> None:
        super()._check_params(names)
        m = self.m_neighbors
        if isinstance(m, bool) or not isinstance(m, Integral) or m < 1:
            raise ConfigError(f"{names.setting('m_neighbors')} must be an integer >= 1, got {m!r}")
        if self.kind not in ("borderline-1", "borderline-2"):
            raise ConfigError(f"{names.setting('kind')} must be 'borderline-1' or 'borderline-2', got {self.kind!r}")

    def _method_name(self) -> str:
        return self.kind

    def _draw_kwargs(self) -> dict[str, Any]:
        return {"m": int(self.m_neighbors)}


class _Random(_Resampler):
    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state

    def _check_X(self, X: Any, names: core.Names) -> np.ndarray:
        arr = np.asarray(X)
        if arr.ndim < 1:
            raise ConfigError(f"X must have one row per sample, got shape {arr.shape}")
        return arr


class RandomOverSampler(_Random):
    """Random over-sampling: repeats randomly drawn rows (with replacement) of the classes to grow."""

    def _resample(self, X, y, classes, codes, plan, rng, names):
        idx = np.concatenate([np.arange(X.shape[0], dtype=np.int64), core.random_over(codes, plan, rng)])
        return X[idx], y[idx], {
            "sample_indices_": idx,
            "synthetic_parents_": np.zeros((0, 2), np.int64),
            "synthetic_lam_": np.zeros(0, np.float32),
        }


class RandomUnderSampler(_Random):
    """Random under-sampling: keeps a random subset (without replacement) of each class to shrink."""

    _kind = UNDER

    def _resample(self, X, y, classes, codes, plan, rng, names):
        idx = core.random_under(codes, plan, rng)
        return X[idx], y[idx], {"sample_indices_": idx}
