"""k-means against scikit-learn's Lloyd at equal work: same initial centroids, same iterations."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from selectkit.neighbors import NeighborConfig, kmeans, knn


def sklearn_lloyd(x, init, n_iter):
    km = KMeans(n_clusters=len(init), init=init, n_init=1, max_iter=n_iter, tol=0, algorithm="lloyd")
    return km.fit(x)


@pytest.mark.parametrize("n_iter", [1, 10])
def test_digits_inertia_matches_sklearn(n_iter):
    x = load_digits().data.astype(np.float32)
    init = x[np.random.default_rng(0).choice(len(x), 10, replace=False)]
    centroids, labels, inertia = kmeans(x, 10, n_iter=n_iter, init=init)
    ref = sklearn_lloyd(x, init, n_iter)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    assert centroids.shape == (10, 64) and labels.shape == (len(x),) and labels.dtype == np.int64
    assert (labels == ref.labels_).mean() > 0.99


def test_random_blobs_and_assignment_through_the_layer():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((20, 8)) * 5)[rng.integers(0, 20, 6000)] + rng.standard_normal((6000, 8))
    init = x[rng.choice(len(x), 20, replace=False)]
    centroids, labels, inertia = kmeans(x, 20, n_iter=15, init=init)
    ref = sklearn_lloyd(x.astype(np.float32), init.astype(np.float32), 15)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    dist, nearest = knn(centroids, x, k=1)
    assert np.array_equal(labels, nearest[:, 0])
    assert inertia == pytest.approx(float(dist.sum(dtype=np.float64)))


def test_seeded_without_init_and_no_subsampling():
    x = np.random.default_rng(2).standard_normal((3000, 4)).astype(np.float32)
    a = kmeans(x, 5, n_iter=5, seed=3)
    b = kmeans(x, 5, n_iter=5, seed=3)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    assert len(np.unique(a[1])) == 5


def test_cosine_is_spherical_and_bad_arguments():
    x = np.abs(np.random.default_rng(4).standard_normal((500, 6)))
    centroids, _, _ = kmeans(x, 4, n_iter=5, config=NeighborConfig(metric="cosine"))
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="k=600"):
        kmeans(x, 600)
    with pytest.raises(ValueError, match="init has shape"):
        kmeans(x, 4, init=np.zeros((3, 6)))
    with pytest.raises(ValueError, match="neighbors.metric='ip'"):
        kmeans(x, 4, config=NeighborConfig(metric="ip"))


def test_empty_clusters_are_refilled_like_sklearn():
    # Three of the initial centroids sit far from every point, so the first assignment leaves them
    # empty; each must restart from a far point, as scikit-learn's Lloyd does, not stay stranded.
    rng = np.random.default_rng(5)
    x = ((rng.standard_normal((8, 5)) * 4)[rng.integers(0, 8, 4000)] + rng.standard_normal((4000, 5))).astype(np.float32)
    init = np.concatenate([x[rng.choice(len(x), 7, replace=False)], np.full((3, 5), 1e3, dtype=np.float32)])
    centroids, labels, inertia = kmeans(x, 10, n_iter=20, init=init)
    ref = sklearn_lloyd(x, init, 20)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    assert len(np.unique(labels)) == 10
    assert np.abs(centroids).max() < 100


def test_subsampled_training_still_assigns_every_point():
    x = np.random.default_rng(6).standard_normal((5000, 3)).astype(np.float32)
    centroids, labels, inertia = kmeans(x, 4, n_iter=5, seed=1, max_points_per_centroid=50)
    assert labels.shape == (5000,)
    dist, nearest = knn(centroids, x, k=1)
    assert np.array_equal(labels, nearest[:, 0]) and inertia == pytest.approx(float(dist.sum(dtype=np.float64)))


def test_result_does_not_depend_on_thread_count():
    import torch

    rng = np.random.default_rng(7)
    x = ((rng.standard_normal((30, 12)) * 3)[rng.integers(0, 30, 20_000)] + rng.standard_normal((20_000, 12))).astype(np.float32)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(kmeans(x, 30, n_iter=8, seed=2))
    finally:
        torch.set_num_threads(before)
    for centroids, labels, inertia in runs[1:]:
        assert np.array_equal(centroids, runs[0][0]) and np.array_equal(labels, runs[0][1]) and inertia == runs[0][2]
