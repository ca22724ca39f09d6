"""`NeighborIndex` as a scikit-learn neighbours object, and inside a real imbalanced-learn SMOTE run."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import NearestNeighbors

from selectkit.neighbors import NeighborConfig, NeighborIndex


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((400, 5)).astype(np.float32)


@pytest.mark.parametrize("metric, sk_metric", [("l2", "euclidean"), ("cosine", "cosine")])
def test_kneighbors_matches_sklearn(metric, sk_metric):
    x = data()
    ours = NeighborIndex(n_neighbors=4, config=NeighborConfig(metric=metric)).fit(x)
    ref = NearestNeighbors(n_neighbors=4, metric=sk_metric, algorithm="brute").fit(x)
    for query in (None, x[:50]):
        d1, i1 = ours.kneighbors(query)
        d2, i2 = ref.kneighbors(query)
        assert np.array_equal(i1, i2)
        np.testing.assert_allclose(d1, d2, atol=1e-4)
    assert np.array_equal(ours.kneighbors(x[:5], 2, return_distance=False), ref.kneighbors(x[:5], 2, return_distance=False))
    g1 = ours.kneighbors_graph(x[:20], mode="distance").toarray()
    g2 = ref.kneighbors_graph(x[:20], mode="distance").toarray()
    np.testing.assert_allclose(g1, g2, atol=1e-4)


def test_params_round_trip_and_clone():
    est = NeighborIndex(n_neighbors=3, config=NeighborConfig(backend="hnsw"), self_join=True)
    assert est.get_params() == {"n_neighbors": 3, "config": NeighborConfig(backend="hnsw"), "self_join": True}
    copy = clone(est).set_params(n_neighbors=7)
    assert copy.n_neighbors == 7 and est.n_neighbors == 3 and copy.self_join
    with pytest.raises(RuntimeError, match="fit"):
        NeighborIndex().kneighbors(np.zeros((1, 2)))


def test_smote_accepts_the_index():
    imblearn = pytest.importorskip("imblearn")
    from imblearn.over_sampling import SMOTE

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((300, 4)), rng.standard_normal((30, 4)) + 3])
    y = np.array([0] * 300 + [1] * 30)
    ours = SMOTE(k_neighbors=NeighborIndex(n_neighbors=6), random_state=0).fit_resample(x, y)
    ref = SMOTE(k_neighbors=NearestNeighbors(n_neighbors=6), random_state=0).fit_resample(x, y)
    assert np.bincount(ours[1]).tolist() == [300, 300]
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5, atol=1e-5)
    assert imblearn.__version__
