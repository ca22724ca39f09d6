"""Turning a ``sampling_strategy`` into per-class sample counts.

The semantics follow imbalanced-learn's, so a strategy means the same thing in both libraries:

* a float ``r`` in (0, 1], binary problems only: over-sampling grows the minority class to
  ``int(r * n_majority)`` samples; under-sampling shrinks the majority class to ``int(n_minority / r)``;
* a dict ``{class: n}``: the number of samples each named class should end up with (over-sampling may
  only grow a class, under-sampling only shrink it); classes not named are left alone;
* a string naming the classes to resample, each brought to the size of the majority class
  (over-sampling) or of the minority class (under-sampling): ``'minority'``, ``'majority'``
  (under-sampling only), ``'not minority'``, ``'not majority'``, ``'all'``, and ``'auto'``, which is
  ``'not majority'`` for over-sampling and ``'not minority'`` for under-sampling;
* a callable ``f(y) -> dict`` (Python API only), read like the dict form.

When two classes tie for largest (or smallest), the one with the smaller label is the majority (minority).

The family's parameter rules are declared here once, in selectkit's rule vocabulary
(`selectkit.selector.Constraint`): `RULES` and `sampling_strategy_rule`. The selectors check them as they
are; the imbalanced-learn compatible estimators translate them into scikit-learn's
``_parameter_constraints`` (see `estimators.sklearn_constraints`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Callable, Mapping

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selector import AnyOf, Boolean, Check, Constraint, Interval, IsNone, OneOf

OVER = "over"
UNDER = "under"

STRATEGY_NAMES = ("auto", "minority", "majority", "not minority", "not majority", "all")
#: the names that can change something in each direction ('majority' cannot over-sample, 'minority' cannot
#: under-sample), as imbalanced-learn's over- and under-samplers accept them
DIRECTION_NAMES = {
    OVER: ("auto", "minority", "not minority", "not majority", "all"),
    UNDER: ("auto", "majority", "not minority", "not majority", "all"),
}


def _label(c: Any) -> str:
    return repr(c.item() if isinstance(c, np.generic) else c)


def class_counts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(classes, codes, counts)``: sorted distinct labels, each sample's class position, class sizes.

    Small non-negative integer labels (the usual case) are counted in one pass, without a sort.
    """
    if y.dtype.kind in "iu" and y.size and 0 <= y.min() and y.max() < max(1024, y.size):
        present = np.bincount(y)
        classes = np.flatnonzero(present).astype(y.dtype)
        position = np.cumsum(present > 0) - 1
        return classes, position[y].astype(np.int64, copy=False), present[classes].astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes.astype(np.int64, copy=False), np.bincount(codes, minlength=classes.size).astype(np.int64)


def resolve_strategy(
    strategy: Any,
    classes: np.ndarray,
    counts: np.ndarray,
    kind: str,
    setting: str,
    y: np.ndarray | None = None,
) -> dict[int, int]:
    """Per-class targets as ``{class position: n}``.

    For over-sampling ``n`` is how many samples to *create* for that class; for under-sampling it is how
    many to *keep*. Classes absent from the result are left as they are.

    Args:
        strategy: the user's ``sampling_strategy``.
        classes: sorted distinct labels (what dict keys are matched against).
        counts: samples per class, aligned with ``classes``.
        kind: ``"over"`` or ``"under"``.
        setting: the full name of the setting, used in error messages (e.g. ``selector.sampling_strategy``).
        y: the labels, only needed for a callable strategy.

    Raises:
        ConfigError: one line naming ``setting`` when the strategy cannot apply to these classes.
    """
    if classes.size < 2:
        raise ConfigError(
            f"{setting}: resampling needs at least 2 classes, the data has {classes.size} class{'' if classes.size == 1 else 'es'}"
            + (f" ({_label(classes[0])})" if classes.size else "")
        )
    major = int(np.argmax(counts))
    minor = int(np.argmin(counts))
    n_major, n_minor = int(counts[major]), int(counts[minor])
    everyone = range(classes.size)

    if callable(strategy) and not isinstance(strategy, (str, Mapping)):
        strategy = _call(strategy, y, setting)

    if isinstance(strategy, str):
        if strategy not in STRATEGY_NAMES:
            raise ConfigError(f"{setting} must be a float, a dict or one of {', '.join(map(repr, STRATEGY_NAMES))}; got {strategy!r}")
        if strategy == "auto":
            strategy = "not majority" if kind == OVER else "not minority"
        if strategy == "majority" and kind == OVER:
            raise ConfigError(f"{setting}='majority' cannot be used when over-sampling (it would leave every class as it is)")
        if strategy == "minority" and kind == UNDER:
            raise ConfigError(f"{setting}='minority' cannot be used when under-sampling (it would leave every class as it is)")
        targets = {
            "all": list(everyone),
            "minority": [minor],
            "majority": [major],
            "not minority": [c for c in everyone if c != minor],
            "not majority": [c for c in everyone if c != major],
        }[strategy]
        if kind == OVER:
            return {c: n_major - int(counts[c]) for c in targets}
        return {c: n_minor for c in targets}

    if isinstance(strategy, Mapping):
        return _from_dict(strategy, classes, counts, kind, setting)

    if isinstance(strategy, Real) and not isinstance(strategy, bool):
        ratio = float(strategy)
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"{setting} as a float must be in (0, 1], got {strategy!r}")
        if classes.size != 2:
            raise ConfigError(f"{setting} can be a float only for two classes, the data has {classes.size}; give a dict {{class: count}} instead")
        if kind == OVER:
            want = int(n_major * ratio - n_minor)
            if want <= 0:
                raise ConfigError(
                    f"{setting}={strategy!r} asks for {int(n_major * ratio)} samples of minority class "
                    f"{_label(classes[minor])}, which already has {n_minor}; over-sampling cannot remove samples (raise the ratio)"
                )
            return {minor: want}
        keep = int(n_minor / ratio)
        if keep > n_major:
            raise ConfigError(
                f"{setting}={strategy!r} asks for {keep} samples of majority class {_label(classes[major])}, "
                f"which has only {n_major}; under-sampling cannot create samples (raise the ratio)"
            )
        return {major: keep}

    raise ConfigError(f"{setting} must be a float, a dict or one of {', '.join(map(repr, STRATEGY_NAMES))}; got {strategy!r}")


def _call(fn: Callable[..., Any], y: np.ndarray | None, setting: str) -> Mapping:
    out = fn(y)
    if not isinstance(out, Mapping):
        raise ConfigError(f"{setting} is a callable that returned {type(out).__name__}, not a dict {{class: count}}")
    return out


def _from_dict(strategy: Mapping, classes: np.ndarray, counts: np.ndarray, kind: str, setting: str) -> dict[int, int]:
    position = {c.item() if isinstance(c, np.generic) else c: i for i, c in enumerate(classes)}
    out: dict[int, int] = {}
    for key, value in strategy.items():
        plain = key.item() if isinstance(key, np.generic) else key
        if plain not in position:
            shown = ", ".join(_label(c) for c in classes)
            raise ConfigError(f"{setting} names class {plain!r}, which is not in the data (classes: {shown})")
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise ConfigError(f"{setting}[{plain!r}] must be a non-negative integer count, got {value!r}")
        c, have, want = position[plain], int(counts[position[plain]]), int(value)
        if kind == OVER and want < have:
            raise ConfigError(f"{setting}[{plain!r}]={want} would shrink class {plain!r} (it has {have}); over-sampling can only grow a class")
        if kind == UNDER and want > have:
            raise ConfigError(f"{setting}[{plain!r}]={want} would grow class {plain!r} (it has {have}); under-sampling can only shrink a class")
        out[c] = want - have if kind == OVER else want
    return dict(sorted(out.items()))


def is_strategy(value: Any) -> bool:
    """Whether ``value`` has a valid *form* for ``sampling_strategy`` (what can be checked without data)."""
    return RULES["sampling_strategy"].ok(value)

def _is_count_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        not isinstance(v, bool) and isinstance(v, Integral) and v >= 0 and not isinstance(k, (float, bool))
        for k, v in value.items()
    )


def _is_function(value: Any) -> bool:
    return callable(value) and not isinstance(value, (str, Mapping, type))


def sampling_strategy_rule(kind: str | None = None) -> Constraint:
    """The rule for ``sampling_strategy``: a ratio in (0, 1], a strategy name, a ``{class: count}`` dict
    or a callable. With ``kind`` (`OVER` or `UNDER`) only the names that can change something in that
    direction pass; without, every name in `STRATEGY_NAMES` does (the data-dependent checks happen in
    `resolve_strategy`)."""
    names = STRATEGY_NAMES if kind is None else DIRECTION_NAMES[kind]
    return AnyOf(
        (
            Interval(0.0, 1.0, low_closed=False),
            OneOf(names),
            Check(_is_count_dict, "a dict {class: count}"),
            Check(_is_function, "a callable"),
        )
    )


def _is_factor_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        not isinstance(v, bool) and isinstance(v, Real) and v >= 0 and not isinstance(k, (float, bool)) for k, v in value.items()
    )


#: one rule per parameter of the family, shared by the selectors and the estimators
RULES: dict[str, Constraint] = {
    "sampling_strategy": sampling_strategy_rule(),
    "k_neighbors": Interval(1, None, integer=True),
    "m_neighbors": Interval(1, None, integer=True),
    "kind": OneOf(("borderline-1", "borderline-2")),
    "neighbors": AnyOf((IsNone(), Check(lambda v: isinstance(v, Mapping), "a mapping of NeighborConfig fields"))),
    # random over-sampling's smoothed bootstrap: one factor for every class, or {class: factor}
    "shrinkage": AnyOf((IsNone(), Interval(0.0, None), Check(_is_factor_dict, "a dict {class: factor >= 0}"))),
    # random under-sampling with replacement
    "replacement": Boolean(),
}
