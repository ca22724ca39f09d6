"""imbalanced-learn's own sampler checks, run over the five estimators (skipped without imbalanced-learn).

``parametrize_with_checks`` is the suite imbalanced-learn runs on its own samplers; ``check_param_validation``
and ``check_dataframe_column_names_consistency`` are the two checks its common tests run next to it.
Some of its checks only test imbalanced-learn's own base classes (``isinstance(sampler, BaseOverSampler)``);
the counts they would check are tested here against imbalanced-learn's samplers directly.
"""

from collections import Counter

import numpy as np
import pytest

imblearn_checks = pytest.importorskip("imblearn.utils.estimator_checks")

from imblearn.over_sampling import SMOTE as ImbSMOTE  # noqa: E402
from imblearn.under_sampling import RandomUnderSampler as ImbRUS  # noqa: E402
from imblearn.utils._tags import get_tags  # noqa: E402

from selectkit_plugins.smote import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler, RandomUnderSampler  # noqa: E402

ESTIMATORS = [
    SMOTE(random_state=42),
    BorderlineSMOTE(random_state=42),
    BorderlineSMOTE(kind="borderline-2", random_state=42),
    ADASYN(random_state=42),
    RandomOverSampler(random_state=42),
    RandomUnderSampler(random_state=42),
]


@imblearn_checks.parametrize_with_checks(ESTIMATORS)
def test_imblearn_sampler_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_imblearn_param_validation(estimator):
    imblearn_checks.check_param_validation(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_imblearn_dataframe_column_names(estimator):
    pytest.importorskip("pandas")
    imblearn_checks.check_dataframe_column_names_consistency(type(estimator).__name__, estimator)


def test_every_check_is_enumerated():
    """The tags switch on the optional checks: sparse and DataFrames for all, strings and NaN for the
    random samplers, ``sample_indices_`` for the random samplers only."""
    names = {
        type(est).__name__: {c.func.__name__ for _, c in imblearn_checks.estimator_checks_generator(est)} for est in ESTIMATORS
    }
    for name, checks in names.items():
        assert {"check_samplers_sparse", "check_samplers_pandas", "check_samplers_2d_target", "check_target_type"} <= checks
        random = name.startswith("Random")
        assert ("check_samplers_string" in checks) is random and ("check_samplers_nan" in checks) is random
    for est in ESTIMATORS:
        assert get_tags(est).sampler_tags.sample_indices is type(est).__name__.startswith("Random")


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_counts_as_imblearn_checks_them(estimator):
    """What ``check_samplers_fit_resample`` and ``check_samplers_sampling_strategy_fit_resample`` assert
    for imbalanced-learn's over- and under-samplers."""
    X, y = imblearn_checks.sample_dataset_generator()
    stats = Counter(y)
    under = isinstance(estimator, RandomUnderSampler)
    _, y_res = estimator.fit_resample(X, y)
    res = Counter(y_res)
    if under:
        assert all(v == min(stats.values()) for v in res.values())
    elif not isinstance(estimator, BorderlineSMOTE):  # Borderline-SMOTE only seeds from danger points
        assert all(v >= max(stats.values()) for v in res.values())
    strategy = {2: 201, 0: 201} if under else {2: 498, 0: 498}
    _, y_res = estimator.set_params(sampling_strategy=strategy).fit_resample(X, y)
    res = Counter(y_res)
    assert res[1] == stats[1]
    if not isinstance(estimator, BorderlineSMOTE):
        assert res[0] == res[2] == (201 if under else 498)
    estimator.set_params(sampling_strategy="auto")


def test_same_errors_as_imblearn():
    """Where imbalanced-learn's SMOTE raises, ours raises an exception of the same type."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.repeat([0, 1], [28, 12])
    bad_X = X.copy()
    bad_X[5, 1] = np.nan
    cases = {
        "nan in X": (dict(), bad_X, y),
        "continuous y": (dict(), X, np.linspace(0, 1, 40)),
        "one class": (dict(), X, np.zeros(40)),
        "multilabel y": (dict(), X, rng.integers(0, 2, size=(40, 3))),
        "k_neighbors type": (dict(k_neighbors="5"), X, y),
        "k_neighbors value": (dict(k_neighbors=0), X, y),
        "sampling_strategy type": (dict(sampling_strategy=[1]), X, y),
        "sampling_strategy name": (dict(sampling_strategy="majority"), X, y),
        "random_state type": (dict(random_state="x"), X, y),
        "string X": (dict(), np.full((40, 2), "a"), y),
        "1-D X": (dict(), X[:, 0], y),
    }
    for what, (params, X_, y_) in cases.items():
        with pytest.raises(Exception) as theirs:
            ImbSMOTE(**params).fit_resample(X_, y_)
        with pytest.raises(Exception) as ours:
            SMOTE(**params).fit_resample(X_, y_)
        assert isinstance(ours.value, type(theirs.value)), f"{what}: imblearn raises {theirs.type.__name__}, we raise {ours.type.__name__}"
        assert "\n" not in str(ours.value), f"{what}: {ours.value}"


def test_under_sampler_counts_match_imblearn():
    X, y = imblearn_checks.sample_dataset_generator()
    for strategy in ("auto", "majority", "not minority", {2: 201}, "all"):
        ours = RandomUnderSampler(sampling_strategy=strategy, random_state=0).fit_resample(X, y)[1]
        theirs = ImbRUS(sampling_strategy=strategy, random_state=0).fit_resample(X, y)[1]
        assert Counter(ours) == Counter(theirs), strategy
