"""scikit-learn conventions of the estimators, neighbour objects as ``k_neighbors``, imblearn pipelines."""

import numpy as np
import pytest
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestNeighbors

from selectkit_plugins.smote import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler, RandomUnderSampler

ALL = [SMOTE, BorderlineSMOTE, ADASYN, RandomOverSampler, RandomUnderSampler]


@pytest.mark.parametrize("cls", ALL)
def test_constructor_stores_params_and_clone_round_trips(cls):
    est = cls(sampling_strategy={1: 80}, random_state=3)
    params = est.get_params()
    assert params["sampling_strategy"] == {1: 80} and params["random_state"] == 3
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(random_state=4) is est and est.random_state == 4
    with pytest.raises(TypeError):
        cls({1: 80})  # keyword-only
    bad = cls(sampling_strategy="bogus")  # stored, not checked, until fit
    assert bad.sampling_strategy == "bogus"


@pytest.mark.parametrize("cls", ALL)
def test_fit_returns_self_and_sets_attributes(cls, data3):
    X, y = data3
    est = cls(random_state=0)
    assert est.fit(X, y) is est
    assert isinstance(est.sampling_strategy_, dict)
    if cls in (RandomOverSampler, RandomUnderSampler):
        X_res, y_res = cls(random_state=0).fit_resample(X, y)
        assert np.array_equal(X_res, X[est.sample_indices_]) and np.array_equal(y_res, y[est.sample_indices_])
    if cls is not RandomUnderSampler:
        assert est.synthetic_parents_.dtype == np.int64 and est.synthetic_parents_.shape[1] == 2
        assert est.synthetic_lam_.dtype == np.float32


def test_nearest_neighbors_object_as_k_neighbors(data3):
    X, y = data3
    nn = NearestNeighbors(n_neighbors=4)
    est = SMOTE(k_neighbors=nn, random_state=0)
    est.fit_resample(X, y)
    assert not hasattr(nn, "n_samples_fit_"), "the caller's object is never fitted"
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        d = ((X[rows, None] - X[None, rows]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        ref = dict(zip(rows, rows[np.argsort(d, axis=1)[:, :3]]))
        for p0, p1 in est.synthetic_parents_[y[est.synthetic_parents_[:, 0]] == c]:
            assert p1 in ref[p0]


def test_neighbor_index_as_k_neighbors(data3):
    from selectkit.neighbors import NeighborIndex

    X, y = data3
    a = SMOTE(k_neighbors=NeighborIndex(n_neighbors=4), random_state=0)
    b = SMOTE(k_neighbors=3, random_state=0)
    Xa, _ = a.fit_resample(X, y)
    Xb, _ = b.fit_resample(X, y)
    assert np.array_equal(Xa, Xb), "an exact NeighborIndex finds the same neighbours as the default search"
    assert clone(a).k_neighbors is not a.k_neighbors


def test_in_imblearn_pipeline_with_logistic_regression(data3):
    X, y = data3
    pipe = Pipeline([("smote", SMOTE(k_neighbors=3, random_state=0)), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(X, y)
    X_res, y_res = SMOTE(k_neighbors=3, random_state=0).fit_resample(X, y)
    direct = LogisticRegression(max_iter=500).fit(X_res, y_res)
    assert np.allclose(pipe.named_steps["clf"].coef_, direct.coef_)
    assert pipe.predict(X).shape == y.shape, "resampling happens in fit only"
    scores = cross_val_score(Pipeline([("under", RandomUnderSampler(random_state=0)), ("clf", LogisticRegression())]), X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0)
    tuned = clone(pipe).set_params(smote__k_neighbors=5)
    assert tuned.named_steps["smote"].k_neighbors == 5


def test_failed_fit_leaves_no_attributes(data3):
    X, y = data3
    est = SMOTE(sampling_strategy={9: 10})
    with pytest.raises(ValueError):
        est.fit_resample(X, y)
    assert not hasattr(est, "sampling_strategy_") and not hasattr(est, "synthetic_parents_")
