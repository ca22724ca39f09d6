"""imbalanced-learn compatible resamplers backed by the same code as the selectors.

Each class is an imbalanced-learn sampler as that library's own checks
(``imblearn.utils.estimator_checks.parametrize_with_checks``) define one, without importing it: a
keyword-only constructor that only stores parameters; ``_parameter_constraints`` checked at the start of
`fit_resample`; sampler and input tags through ``__sklearn_tags__``; results in trailing-underscore
attributes; ``get_params`` / ``set_params`` / ``clone`` from ``BaseEstimator`` and
``get_feature_names_out`` from ``OneToOneFeatureMixin``. They drop into ``imblearn.pipeline.Pipeline``.

Inputs are those imbalanced-learn accepts: arrays, lists (answered with lists), pandas DataFrames and
Series (answered in kind), scipy sparse matrices (answered sparse), a column-vector ``y``, string labels,
and a one-hot ``y`` (answered one-hot). The interpolating samplers densify sparse ``X`` after checking the
dense copy against ``neighbors.memory_cap_gb``; the random samplers index it as it is.

Common attributes after `fit_resample`:
    sampling_strategy_: ``{class: n}``: samples created per class (over-samplers) or kept (under-sampler).
    synthetic_parents_: int64 ``[m, 2]`` rows of ``X`` each new sample was made from (over-samplers).
    synthetic_lam_: float32 ``[m]``: ``X_new = X[p0] + lam * (X[p1] - X[p0])`` (over-samplers).
    sample_indices_: rows of ``X`` behind each output row (random over- and under-sampling).
    n_features_in_, feature_names_in_: as in scikit-learn (the latter for DataFrames with string names).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any, Mapping

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin
from sklearn.utils._param_validation import HasMethods, InvalidParameterError, Options, StrOptions
from sklearn.utils._param_validation import Interval as SkInterval
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.multiclass import type_of_target

from selectkit.errors import ConfigError
from selectkit.selector import AnyOf, Boolean, Check, Constraint, Interval, IsNone, OneOf
from selectkit_plugins.smote import core
from selectkit_plugins.smote.strategy import OVER, RULES, UNDER, class_counts, resolve_strategy, sampling_strategy_rule

GB = 1e9

try:  # scikit-learn >= 1.6: the dataclass tags that imbalanced-learn extends
    from sklearn.utils._tags import InputTags as _SkInputTags
    from sklearn.utils._tags import Tags as _SkTags
    from sklearn.utils._tags import TargetTags
except ImportError:  # pragma: no cover - older scikit-learn has no __sklearn_tags__
    _SkTags = None


class InvalidParameter(ConfigError, InvalidParameterError):
    """A constructor parameter breaks its rule: both selectkit's `ConfigError` and scikit-learn's
    ``InvalidParameterError`` (a ``ValueError`` and a ``TypeError``), as imbalanced-learn raises."""


class DataTypeError(ConfigError, TypeError):
    """``X`` holds objects that are not numbers (a ``TypeError`` too, as NumPy's conversion raises)."""


# ---------------------------------------------------------------------------------------------------
# the shared rules (strategy.RULES) in scikit-learn's vocabulary


class _Rule(Options):
    """A selectkit rule without a scikit-learn counterpart, as a scikit-learn constraint."""

    def __init__(self, rule: Constraint) -> None:
        super().__init__(object, set())
        self.rule = rule

    def is_satisfied_by(self, val: Any) -> bool:
        return self.rule.ok(val)

    def __str__(self) -> str:
        return self.rule.describe()


def sklearn_constraints(rule: Constraint) -> list[Any]:
    """A selectkit `Constraint` as a list of scikit-learn ``_parameter_constraints`` entries.

    Intervals, string options and null map onto scikit-learn's own constraints (so its checks can
    generate invalid values for them); other rules are wrapped and keep their own test and description.
    """
    if isinstance(rule, AnyOf):
        return [c for option in rule.options for c in sklearn_constraints(option)]
    if isinstance(rule, IsNone):
        return [None]
    if isinstance(rule, Boolean):
        return ["boolean"]
    if isinstance(rule, Interval):
        low_closed = rule.low_closed and rule.low is not None
        high_closed = rule.high_closed and rule.high is not None
        closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}
        kind = Integral if rule.integer else Real
        return [SkInterval(kind, rule.low, rule.high, closed=closed[low_closed, high_closed])]
    if isinstance(rule, OneOf) and all(isinstance(c, str) for c in rule.choices):
        return [StrOptions(set(rule.choices))]
    return [_Rule(rule)]


def _is_neighbor_config(value: Any) -> bool:
    config = sys.modules.get("selectkit.neighbors.config")  # not loaded: value cannot be one
    return config is not None and isinstance(value, config.NeighborConfig)


_RANDOM_STATE = ["random_state", np.random.Generator]
_NEIGHBOR_OBJECT = HasMethods(["fit", "kneighbors"])


# ---------------------------------------------------------------------------------------------------
# tags


if _SkTags is not None:

    @dataclass(slots=True)
    class InputTags(_SkInputTags):
        """scikit-learn's input tags plus imbalanced-learn's ``dataframe``."""

        dataframe: bool = False

    @dataclass(slots=True)
    class SamplerTags:
        """imbalanced-learn's sampler tags: whether ``sample_indices_`` is set."""

        sample_indices: bool = False

    @dataclass(slots=True)
    class Tags(_SkTags):
        """scikit-learn's tags plus imbalanced-learn's ``sampler_tags``."""

        sampler_tags: SamplerTags | None = None


# ---------------------------------------------------------------------------------------------------
# input and output containers


@dataclass
class _Like:
    """How to hand an array back in the container the user passed (list, DataFrame, Series, sparse)."""

    kind: str
    columns: Any = None
    dtypes: Any = None
    name: Any = None
    sparse_frame: bool = False

    @classmethod
    def of(cls, value: Any) -> "_Like":
        if isinstance(value, list):
            return cls("list")
        module = type(value).__module__.split(".")[0]
        if module == "pandas" and type(value).__name__ == "DataFrame":
            import pandas as pd

            frame_sparse = bool(len(value.columns)) and all(isinstance(t, pd.SparseDtype) for t in value.dtypes)
            return cls("frame", columns=value.columns, dtypes=value.dtypes, sparse_frame=frame_sparse)
        if module == "pandas" and type(value).__name__ == "Series":
            return cls("series", dtypes=value.dtype, name=value.name)
        return cls("array")

    def write(self, arr: Any, index: Any = None) -> Any:
        """``arr`` (ndarray, sparse matrix or, from the random samplers, a DataFrame) in this container."""
        if self.kind == "list":
            return (arr.toarray() if sparse.issparse(arr) else np.asarray(arr)).tolist()
        if self.kind == "frame":
            import pandas as pd

            if isinstance(arr, pd.DataFrame):
                return arr
            if sparse.issparse(arr):
                out = pd.DataFrame.sparse.from_spmatrix(arr, columns=self.columns)
            else:
                out = pd.DataFrame(arr.reshape(arr.shape[0], -1), columns=self.columns)
            out = out.astype(self.dtypes)
            if index is not None:
                out.index = index
            return out
        if self.kind == "series":
            import pandas as pd

            return pd.Series(arr, dtype=self.dtypes, name=self.name, index=index)
        return arr


def _frame_values(X: Any, like: _Like) -> Any:
    """A DataFrame's values: a CSR matrix for an all-sparse frame, else an ndarray."""
    if like.sparse_frame:
        return X.sparse.to_coo().tocsr()
    return X.to_numpy()


@dataclass
class _Target:
    """``y`` read the way imbalanced-learn reads it: 1-D labels, and whether it came one-hot."""

    labels: np.ndarray
    width: int  # columns of a one-hot y, 0 otherwise
    like: _Like
    dtype: np.dtype

    @classmethod
    def read(cls, y: Any) -> "_Target":
        like = _Like.of(y)
        arr = np.asarray(y)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ConfigError("y must be finite, found NaN or inf")
        kind = type_of_target(arr, input_name="y")
        if kind in ("binary", "multiclass"):
            return cls(arr.reshape(-1) if arr.ndim == 2 else arr, 0, like, arr.dtype)
        if kind == "multilabel-indicator":
            if not (arr.sum(axis=1) == 1).all():
                raise ConfigError(
                    "y: multilabel and multioutput targets are not supported; a 2-D y must be one-hot "
                    "(exactly one 1 per row) or a single column"
                )
            return cls(arr.argmax(axis=1), arr.shape[1], like, arr.dtype)
        if kind.endswith("multioutput"):
            raise ConfigError(f"y: multilabel and multioutput targets are not supported, got a {kind} target of shape {arr.shape}")
        raise ConfigError(f"y: Unknown label type: {kind}; resampling needs class labels (binary or multiclass), not {kind} values")

    def write(self, labels: np.ndarray, index: Any = None) -> Any:
        """Resampled labels in the form ``y`` came in (one-hot rows in ``y``'s dtype if it was one-hot)."""
        out = labels
        if self.width:
            out = np.zeros((labels.size, self.width), dtype=self.dtype)
            out[np.arange(labels.size), labels] = 1
        if self.like.kind == "frame" and out.ndim == 1:
            out = out[:, None]
        return self.like.write(out, index)


def _record_features(est: BaseEstimator, X: Any) -> None:
    """Set ``n_features_in_`` (and ``feature_names_in_`` for named columns) from the user's ``X``."""
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # pragma: no cover - scikit-learn < 1.6
        est._check_n_features(X, reset=True)
        est._check_feature_names(X, reset=True)
        return
    validate_data(est, X, reset=True, skip_check_array=True)


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


# ---------------------------------------------------------------------------------------------------
# the estimators


class _Resampler(OneToOneFeatureMixin, BaseEstimator):
    """``fit_resample`` validates, resolves the strategy, runs ``_resample`` and stores the results."""

    _kind = OVER
    _estimator_type = "sampler"
    _any_values = False  # X may hold strings and NaN (only rows are copied)
    _sample_indices = False
    _parameter_constraints: dict = {
        "sampling_strategy": sklearn_constraints(sampling_strategy_rule(OVER)),
        "random_state": _RANDOM_STATE,
    }

    def fit(self, X: Any, y: Any) -> "_Resampler":
        """Check the parameters and the data and set ``sampling_strategy_`` (and ``n_features_in_``),
        as imbalanced-learn's ``fit`` does; resampling happens in `fit_resample` only. Returns ``self``."""
        _, _, _, classes, _, plan = self._prepare(X, y)
        self._finish(X, classes, plan, {})
        return self

    def fit_resample(self, X: Any, y: Any) -> tuple[Any, Any]:
        """Return ``(X_resampled, y_resampled)`` in the containers ``X`` and ``y`` came in.

        Over-samplers return the original rows first, then the new ones; ``y_resampled`` keeps ``y``'s
        dtype, and is one-hot when ``y`` was.
        """
        target, X_work, labels, classes, codes, plan = self._prepare(X, y)
        names = self._names(classes)
        X_res, y_res, attrs = self._resample(X_work, labels, classes, codes, plan, _rng(self.random_state), names)
        self._finish(X, classes, plan, attrs)
        x_like = _Like.of(X)
        X_out = x_like.write(X_res)
        index = X_out.index if x_like.kind == "frame" else None
        return X_out, target.write(y_res, index)

    def _prepare(self, X: Any, y: Any) -> tuple[_Target, Any, np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
        """Every check, in imbalanced-learn's order (parameters, target type, X, strategy), before any work."""
        self._validate_params()
        if y is None:
            raise ConfigError(f"{type(self).__name__} requires y to be passed, but the target y is None; give one class label per row of X")
        target = _Target.read(y)
        x_like = _Like.of(X)
        names = self._names()
        X_work = self._check_X(_frame_values(X, x_like) if x_like.kind == "frame" and not self._any_values else X, names)
        n, d = X_work.shape[0], (int(np.prod(X_work.shape[1:])) if len(X_work.shape) > 1 else 1)
        if n == 0 or d == 0:
            what = "0 sample(s)" if n == 0 else "0 feature(s)"
            raise ConfigError(f"X: found an array with {what} (shape={tuple(X_work.shape)}) while a minimum of 1 is required.")
        labels = core.check_labels(target.labels, n, names, what="y")
        classes, codes, counts = class_counts(labels)
        names = self._names(classes)
        plan = resolve_strategy(self.sampling_strategy, classes, counts, self._kind, names.setting("sampling_strategy"), labels)
        return target, X_work, labels, classes, codes, plan

    def _names(self, classes: np.ndarray | None = None) -> core.Names:
        return core.Names(type(self).__name__, "X", classes)

    def _finish(self, X: Any, classes: np.ndarray, plan: Mapping[int, int], attrs: dict[str, Any]) -> None:
        attrs["sampling_strategy_"] = {_plain(classes[c]): int(n) for c, n in plan.items()}
        _record_features(self, X)
        for key, value in attrs.items():
            setattr(self, key, value)

    def _validate_params(self) -> None:
        """Check every parameter against ``_parameter_constraints``; `InvalidParameter` names the first
        that breaks its rule, in scikit-learn's words (``The 'k' parameter of SMOTE must be ...``)."""
        params = self.get_params(deep=False)
        for key, rules in self._parameter_constraints.items():
            try:
                validate_parameter_constraints({key: rules}, {key: params[key]}, caller_name=type(self).__name__)
            except InvalidParameterError as err:
                raise InvalidParameter(f"{type(self).__name__}.{key}={params[key]!r}: {err}") from None

    def _check_X(self, X: Any, names: core.Names) -> Any:
        if sparse.issparse(X):
            if X.dtype.kind not in "fiub":
                raise ConfigError(f"X must be numeric, got sparse dtype {X.dtype}")
            X = X if X.format in ("csr", "csc") else X.tocsr()
            X = X if X.dtype.kind == "f" else X.astype(np.float64)
            if not np.isfinite(X.data).all():
                raise ConfigError("X must be finite: its stored values hold NaN or inf; clean or impute them first")
            return X
        arr = np.asarray(X)
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except TypeError as err:
                raise DataTypeError(f"X must be numeric: {err}") from None
            except ValueError as err:
                raise ConfigError(f"X must be numeric: {err}") from None
        return core.check_matrix(arr, names)

    def __sklearn_tags__(self) -> Any:
        """imbalanced-learn's sampler tags: a sampler taking 2-D arrays, sparse matrices and DataFrames,
        needing ``y``; the random samplers also take strings and NaN and set ``sample_indices_``."""
        base = super().__sklearn_tags__()
        if _SkTags is None:  # pragma: no cover
            return base
        tags = Tags(**{f.name: getattr(base, f.name) for f in fields(base)})
        tags.estimator_type = "sampler"
        tags.target_tags = TargetTags(required=True)
        tags.input_tags = InputTags(**{f.name: getattr(base.input_tags, f.name) for f in fields(base.input_tags)})
        tags.input_tags.two_d_array = True
        tags.input_tags.sparse = True
        tags.input_tags.dataframe = True
        tags.input_tags.string = self._any_values
        tags.input_tags.allow_nan = self._any_values
        tags.sampler_tags = SamplerTags(sample_indices=self._sample_indices)
        return tags

    def _resample(self, X, y, classes, codes, plan, rng, names):  # pragma: no cover - interface
        raise NotImplementedError


class _Interpolating(_Resampler):
    _method = "smote"
    _parameter_constraints: dict = {
        **_Resampler._parameter_constraints,
        "k_neighbors": [*sklearn_constraints(RULES["k_neighbors"]), _NEIGHBOR_OBJECT],
        "neighbors": [*sklearn_constraints(RULES["neighbors"]), _Rule(Check(_is_neighbor_config, "a NeighborConfig"))],
    }

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None, k_neighbors: Any = 5, neighbors: Any = None) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state
        self.k_neighbors = k_neighbors
        self.neighbors = neighbors

    def _draw_kwargs(self) -> dict[str, Any]:
        return {}

    def _method_name(self) -> str:
        return self._method

    def _k_neighbors(self) -> Any:
        return self.k_neighbors

    def _densify(self, X: Any, plan: Mapping[int, int], names: core.Names) -> np.ndarray:
        """A sparse ``X`` as a dense array, after checking what that costs against the memory cap."""
        from selectkit.neighbors.memory import MemoryCapExceeded

        n, d = X.shape
        m = sum(int(g) for g in plan.values() if g > 0)
        size = X.dtype.itemsize
        # the dense copy, its float32 search copy, the new rows dense and as sparse values + indices
        need = n * d * size + (0 if X.dtype == np.float32 else n * d * 4) + m * d * (2 * size + 8)
        cap = core.make_config(self.neighbors, names).memory_cap_gb
        if need > cap * GB:
            raise MemoryCapExceeded(
                f"{names.setting('neighbors')}.memory_cap_gb={cap:g} is below the {need / GB:.3g} GB that densifying "
                f"sparse X ({n} x {d}, {m} new rows) needs; raise {names.setting('neighbors')}.memory_cap_gb or pass a dense X"
            )
        return X.toarray()

    def _resample(self, X, y, classes, codes, plan, rng, names):
        source, k = core.neighbor_source(self.neighbors, self._k_neighbors(), names)
        X_sparse = X if sparse.issparse(X) else None
        if X_sparse is not None:
            X = self._densify(X_sparse, plan, names)
        search = core.as_search_matrix(X)
        drawn = core.draw(self._method_name(), search, codes, plan, rng, source, k=k, names=names, **self._draw_kwargs())
        n, m = X.shape[0], drawn.lam.size
        y_res = np.concatenate([y, classes[drawn.codes]])
        attrs = {"synthetic_parents_": drawn.parents, "synthetic_lam_": drawn.lam, "resample_info_": drawn.meta}
        if X_sparse is not None:
            new = core.interpolate(X, drawn.parents, drawn.lam)
            make = sparse.csr_array if isinstance(X_sparse, sparse.sparray) else sparse.csr_matrix
            return sparse.vstack([X_sparse, make(new)], format=X_sparse.format), y_res, attrs
        X_res = np.empty((n + m, X.shape[1]), dtype=X.dtype)
        X_res[:n] = X
        core.interpolate(X, drawn.parents, drawn.lam, out=X_res[n:])
        return X_res, y_res, attrs


class SMOTE(_Interpolating):
    """SMOTE over-sampling (Chawla et al., 2002).

    Args:
        sampling_strategy: float (binary), dict ``{class: target count}``, strategy name or callable.
        random_state: None, int, numpy RandomState or Generator.
        k_neighbors: neighbours per seed (int), or an object with ``fit`` / ``kneighbors`` whose
            ``n_neighbors`` counts the point itself (e.g. a ``NeighborIndex`` or ``NearestNeighbors``).
        neighbors: `NeighborConfig` or a dict of its fields, for the default search; its
            ``memory_cap_gb`` also bounds the dense copy of a sparse ``X``.
    """

    _method = "smote"


@dataclass(frozen=True)
class _Aliased(core.Names):
    """`core.Names` that reports some settings under another parameter's name."""

    aliases: tuple[tuple[str, str], ...] = ()

    def setting(self, key: str) -> str:
        return super().setting(dict(self.aliases).get(key, key))


class ADASYN(_Interpolating):
    """ADASYN over-sampling (He et al., 2008): seeds weighted by the share of other-class neighbours.

    Args:
        n_neighbors: imbalanced-learn's name for ``k_neighbors`` (an int or an object with
            ``kneighbors``); when set, it is used instead of ``k_neighbors``.
        (others as `SMOTE`)
    """

    _method = "adasyn"
    _parameter_constraints: dict = {
        **_Interpolating._parameter_constraints,
        "n_neighbors": [None, *_Interpolating._parameter_constraints["k_neighbors"]],
    }

    def __init__(
        self,
        *,
        sampling_strategy: Any = "auto",
        random_state: Any = None,
        k_neighbors: Any = 5,
        n_neighbors: Any = None,
        neighbors: Any = None,
    ) -> None:
        super().__init__(sampling_strategy=sampling_strategy, random_state=random_state, k_neighbors=k_neighbors, neighbors=neighbors)
        self.n_neighbors = n_neighbors

    def _k_neighbors(self) -> Any:
        return self.k_neighbors if self.n_neighbors is None else self.n_neighbors

    def _names(self, classes: np.ndarray | None = None) -> core.Names:
        if self.n_neighbors is None:
            return super()._names(classes)
        return _Aliased(type(self).__name__, "X", classes, aliases=(("k_neighbors", "n_neighbors"),))


class BorderlineSMOTE(_Interpolating):
    """Borderline-SMOTE (Han et al., 2005): only minority points in danger seed new samples.

    Args:
        m_neighbors: neighbours (any class) of the danger test.
        kind: ``'borderline-1'`` or ``'borderline-2'``.
        (others as `SMOTE`)
    """

    _parameter_constraints: dict = {
        **_Interpolating._parameter_constraints,
        "m_neighbors": sklearn_constraints(RULES["m_neighbors"]),
        "kind": sklearn_constraints(RULES["kind"]),
    }

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

    def _method_name(self) -> str:
        return self.kind

    def _draw_kwargs(self) -> dict[str, Any]:
        return {"m": int(self.m_neighbors)}


def _take(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an ndarray, a sparse matrix or a DataFrame (whose index labels follow the rows)."""
    if type(X).__module__.split(".")[0] == "pandas":
        return X.iloc[idx]
    return X[idx]


class _Random(_Resampler):
    _any_values = True
    _sample_indices = True

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state

    def _check_X(self, X: Any, names: core.Names) -> Any:
        if type(X).__module__.split(".")[0] == "pandas":
            return X
        if sparse.issparse(X):
            return X if X.format in ("csr", "csc") else X.tocsr()
        arr = np.asarray(X)
        if arr.ndim < 2:
            raise ConfigError(f"X must have one row per sample ([n, d]), got shape {arr.shape}")
        return arr


class RandomOverSampler(_Random):
    """Random over-sampling: repeats randomly drawn rows (with replacement) of the classes to grow.

    Args:
        shrinkage: None (plain repeats), a factor >= 0 for every class, or ``{class: factor}`` for each
            class that grows: a smoothed bootstrap, as in imbalanced-learn. Each repeated row gets
            Gaussian noise of standard deviation ``factor * h * std_j`` in feature ``j``, with ``std_j``
            the class's standard deviation and ``h = (4 / ((d + 2) n)) ** (1 / (d + 4))`` over all ``n``
            rows (a rule-of-thumb kernel bandwidth, Menardi and Torelli 2014). Needs numeric ``X``.
        (others as `RandomUnderSampler`)

    ``sample_indices_`` names the row behind each output row (the one perturbed, with shrinkage);
    ``shrinkage_`` is ``{class: factor}`` or None.
    """

    _parameter_constraints: dict = {
        **_Random._parameter_constraints,
        "shrinkage": sklearn_constraints(RULES["shrinkage"]),
    }

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None, shrinkage: Any = None) -> None:
        super().__init__(sampling_strategy=sampling_strategy, random_state=random_state)
        self.shrinkage = shrinkage

    def _factors(self, classes: np.ndarray, plan: Mapping[int, int], names: core.Names) -> dict[int, float] | None:
        """``{class position: factor}`` for every class in the plan, or None without shrinkage."""
        if self.shrinkage is None:
            return None
        if not isinstance(self.shrinkage, Mapping):
            return {c: float(self.shrinkage) for c in plan}
        given = {_plain(k): float(v) for k, v in self.shrinkage.items()}
        missing = [_plain(classes[c]) for c in plan if _plain(classes[c]) not in given]
        if missing:
            raise ConfigError(f"{names.setting('shrinkage')} needs a factor for every class it over-samples; missing: {', '.join(map(repr, missing))}")
        return {c: given[_plain(classes[c])] for c in plan}

    def _resample(self, X, y, classes, codes, plan, rng, names):
        extra = core.random_over(codes, plan, rng)
        idx = np.concatenate([np.arange(X.shape[0], dtype=np.int64), extra])
        factors = self._factors(classes, plan, names)
        attrs = {
            "sample_indices_": idx,
            "synthetic_parents_": np.zeros((0, 2), np.int64),
            "synthetic_lam_": np.zeros(0, np.float32),
            "shrinkage_": None if factors is None else {_plain(classes[c]): f for c, f in factors.items()},
        }
        if factors is None:
            return _take(X, idx), y[idx], attrs
        X_num = X
        if type(X).__module__.split(".")[0] == "pandas":
            X_num = X.to_numpy()
        try:
            X_num = _Resampler._check_X(self, X_num, names)
        except ConfigError as err:
            raise ConfigError(f"{names.setting('shrinkage')} needs numeric, finite X for the smoothed bootstrap: {err}") from None
        return self._smoothed(X_num, codes, extra, factors, rng), y[idx], attrs

    @staticmethod
    def _smoothed(X: Any, codes: np.ndarray, extra: np.ndarray, factors: Mapping[int, float], rng: np.random.Generator) -> Any:
        """``X`` followed by its rows ``extra``, each perturbed by its class's Gaussian kernel."""
        n, d = X.shape
        h = (4.0 / ((d + 2) * n)) ** (1.0 / (d + 4))
        scale = np.zeros((int(codes.max()) + 1, d))
        for c, factor in factors.items():
            rows = np.flatnonzero(codes == c)
            part = X[rows]
            if sparse.issparse(part):
                mean = np.asarray(part.mean(axis=0)).ravel()
                std = np.sqrt(np.maximum(np.asarray(part.multiply(part).mean(axis=0)).ravel() - mean**2, 0.0))
            else:
                std = part.std(axis=0)
            scale[c] = factor * h * std
        base = X[extra]
        base = base.toarray() if sparse.issparse(base) else base
        new = (base + rng.standard_normal((extra.size, d)) * scale[codes[extra]]).astype(X.dtype, copy=False)
        if sparse.issparse(X):
            make = sparse.csr_array if isinstance(X, sparse.sparray) else sparse.csr_matrix
            return sparse.vstack([X, make(new)], format=X.format)
        return np.concatenate([X, new])


class RandomUnderSampler(_Random):
    """Random under-sampling: keeps a random subset of each class to shrink, drawn without replacement
    (or, with ``replacement=True``, with replacement, as imbalanced-learn's option); rows come ascending.
    """

    _kind = UNDER
    _parameter_constraints: dict = {
        **_Random._parameter_constraints,
        "sampling_strategy": sklearn_constraints(sampling_strategy_rule(UNDER)),
        "replacement": sklearn_constraints(RULES["replacement"]),
    }

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = None, replacement: bool = False) -> None:
        super().__init__(sampling_strategy=sampling_strategy, random_state=random_state)
        self.replacement = replacement

    def _resample(self, X, y, classes, codes, plan, rng, names):
        if self.replacement:
            members = core.class_members(codes, classes.size)
            kept = [rows[rng.integers(0, rows.size, size=int(plan[c]))] if c in plan else rows for c, rows in enumerate(members)]
            idx = np.sort(np.concatenate(kept)).astype(np.int64)
        else:
            idx = core.random_under(codes, plan, rng)
        return _take(X, idx), y[idx], {"sample_indices_": idx}
