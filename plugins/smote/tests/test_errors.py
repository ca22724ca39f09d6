"""Bad settings and bad data: one-line `ConfigError`s naming what to change, raised before any work."""

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.selector import Pool, SelectContext
from selectkit_plugins.smote import (
    SMOTE,
    ADASYNSelector,
    BorderlineSMOTESelector,
    RandomOverSampler,
    RandomOverSelector,
    RandomUnderSampler,
    RandomUnderSelector,
    SMOTESelector,
)

OVER = [SMOTESelector, BorderlineSMOTESelector, ADASYNSelector]


def _pool(X, y):
    return Pool(np.arange(len(y), dtype=np.int64), labels=np.asarray(y), features=X)


def _raises(fn, *needles):
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
    return msg


@pytest.mark.parametrize("cls", OVER)
def test_class_smaller_than_k_plus_one(cls, make_data):
    X, y = make_data(sizes=(100, 40, 4))
    msg = _raises(lambda: cls(k_neighbors=5).select(_pool(X, y), SelectContext(seed=0)), "selector.k_neighbors", "class 2")
    if cls is not BorderlineSMOTESelector:
        assert "has 4" in msg
    # a class left out of the strategy may be small
    sel = SMOTESelector(k_neighbors=5, sampling_strategy={1: 100}).select(_pool(X, y), SelectContext(seed=0))
    assert sel.num_synthetic == 60


def test_estimator_names_its_own_setting(make_data):
    X, y = make_data(sizes=(100, 4))
    _raises(lambda: SMOTE().fit_resample(X, y), "SMOTE.k_neighbors=5", "class 1 has 4")


@pytest.mark.parametrize("cls", OVER + [RandomOverSelector, RandomUnderSelector])
def test_single_class(cls):
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    _raises(lambda: cls().select(_pool(X, np.zeros(30, np.int64)), SelectContext(seed=0)), "selector.sampling_strategy", "2 classes")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls", OVER)
def test_non_finite_features(cls, bad, data3):
    X, y = data3
    X = X.copy()
    X[17, 2] = bad
    _raises(lambda: cls().select(_pool(X, y), SelectContext(seed=0)), "data: features", "row 17")
    _raises(lambda: SMOTE().fit_resample(X, y), "X must be finite", "NaN or inf")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_finite_check_value_by_value(dtype):
    """The row-sum shortcut of the finiteness check: finite rows whose sums overflow still pass, and a
    NaN or inf is found wherever it sits, in C or Fortran order."""
    from selectkit_plugins.smote.core import all_finite

    big = np.full((50, 7), np.finfo(dtype).max / 2, dtype=dtype)
    assert all_finite(big)
    for order in ("C", "F"):
        for bad in (np.nan, np.inf, -np.inf):
            X = np.array(big, order=order)
            X[31, 6] = bad
            assert not all_finite(X)
    X = np.full((50, 7), 1.0, dtype=dtype)
    X[3, 0], X[3, 1] = np.inf, -np.inf  # the row sums to NaN
    assert not all_finite(X)


def test_non_finite_embeddings_name_embeddings(data3):
    X, y = data3
    E = X.copy()
    E[3, 0] = np.nan
    pool = Pool(np.arange(y.size, dtype=np.int64), labels=y, features=X, embeddings=E)
    _raises(lambda: SMOTESelector(space="embedding").select(pool, SelectContext(seed=0)), "data: embeddings")


def test_non_numeric_features(data3):
    _, y = data3
    words = np.array(["x"] * y.size, dtype=object)[:, None]
    _raises(lambda: SMOTESelector().select(_pool(words, y), SelectContext(seed=0)), "data: features", "numeric")
    _raises(lambda: SMOTE().fit_resample(np.full((y.size, 2), "a"), y), "X must be numeric")


@pytest.mark.parametrize("cls", OVER + [RandomOverSelector])
def test_over_sampling_cannot_shrink(cls, data3):
    X, y = data3
    run = lambda s: cls(sampling_strategy=s).select(_pool(X, y), SelectContext(seed=0))  # noqa: E731
    _raises(lambda: run({0: 10}), "selector.sampling_strategy[0]=10", "shrink")
    Xb, yb = X[y < 2], y[y < 2]
    runb = lambda s: cls(sampling_strategy=s).select(_pool(Xb, yb), SelectContext(seed=0))  # noqa: E731
    _raises(lambda: runb(0.1), "selector.sampling_strategy=0.1", "cannot remove")
    _raises(lambda: run(0.5), "selector.sampling_strategy", "two classes")
    _raises(lambda: run("majority"), "selector.sampling_strategy='majority'")


def test_under_sampling_cannot_grow(data3):
    X, y = data3
    run = lambda s: RandomUnderSelector(sampling_strategy=s).select(_pool(X, y), SelectContext(seed=0))  # noqa: E731
    _raises(lambda: run({2: 41}), "selector.sampling_strategy[2]=41", "grow")
    _raises(lambda: run("minority"), "selector.sampling_strategy='minority'")
    Xb, yb = X[y < 2], y[y < 2]
    _raises(lambda: RandomUnderSampler(sampling_strategy=0.1).fit_resample(Xb, yb), "RandomUnderSampler.sampling_strategy=0.1", "cannot create")


@pytest.mark.parametrize("cls", OVER + [RandomOverSelector, RandomUnderSelector])
def test_unknown_strategy_and_unknown_class(cls, data3):
    X, y = data3
    run = lambda s: cls(sampling_strategy=s).select(_pool(X, y), SelectContext(seed=0))  # noqa: E731
    _raises(lambda: run("balanced"), "selector.sampling_strategy must be", "'balanced'")
    _raises(lambda: run({7: 500}), "selector.sampling_strategy names class 7", "classes: 0, 1, 2")
    _raises(lambda: run({1: -3}), "selector.sampling_strategy")
    _raises(lambda: RandomOverSampler(sampling_strategy={"z": 5}).fit_resample(X, y), "RandomOverSampler.sampling_strategy names class 'z'")


def test_bad_neighbor_config(data3):
    X, y = data3
    _raises(lambda: SMOTESelector(neighbors="ivf").select(_pool(X, y), SelectContext(seed=0)), "selector.neighbors")
    _raises(lambda: SMOTESelector(neighbors={"no_such_field": 1}).select(_pool(X, y), SelectContext(seed=0)), "selector.neighbors.no_such_field")
    _raises(lambda: SMOTESelector(neighbors={"backend": "annoy"}).select(_pool(X, y), SelectContext(seed=0)), "selector.neighbors.backend='annoy'")
    _raises(lambda: SMOTE(neighbors={"nprobe": 0}).fit_resample(X, y), "SMOTE.neighbors.nprobe=0")


def test_memory_cap_is_named_under_the_selector(data3):
    from selectkit.neighbors import MemoryCapExceeded

    X, y = data3
    sel = ADASYNSelector(neighbors={"memory_cap_gb": 1e-6})
    with pytest.raises(MemoryCapExceeded, match=r"^selector\.neighbors\.memory_cap_gb"):
        sel.select(_pool(X, y), SelectContext(seed=0))


def test_pipeline_path_is_named(data3):
    X, y = data3
    sel = SMOTESelector(k_neighbors=500)
    sel.config_path = "pipeline.stages.smote"
    _raises(lambda: sel.select(_pool(X, y), SelectContext(seed=0)), "pipeline.stages.smote.k_neighbors=500")


def test_estimator_bad_params(data3):
    X, y = data3
    _raises(lambda: SMOTE(k_neighbors=0).fit_resample(X, y), "SMOTE.k_neighbors")
    _raises(lambda: SMOTE(random_state="x").fit_resample(X, y), "SMOTE.random_state")
    _raises(lambda: SMOTE().fit_resample(X, y[:-1]), "y must be a 1-D array")
