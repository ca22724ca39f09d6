"""Exact search equals a float64 brute-force reference (ties aside), for every metric and with self-exclusion."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from selectkit.neighbors import NeighborConfig, NeighborIndex, knn


def reference(base, queries, metric):
    """Float64 brute force: distance matrix in the layer's convention and the sort direction."""
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    if metric == "l2":
        return np.maximum((q * q).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * q @ b.T, 0.0), 1.0
    return q @ b.T, -1.0


def assert_matches(dist, idx, full, sign, k, atol):
    """Returned distances match the reference top-k, and each returned index has that distance."""
    nq = full.shape[0]
    expect = np.sort(sign * full, axis=1)[:, :k] * sign
    np.testing.assert_allclose(dist, expect, rtol=1e-4, atol=atol)
    np.testing.assert_allclose(full[np.arange(nq)[:, None], idx], expect, rtol=1e-4, atol=atol)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (nq, k)
    assert (np.diff(sign * dist.astype(np.float64), axis=1) >= -atol).all()
    assert all(len(set(row)) == k for row in idx)


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("block_size", [None, 7])
def test_random_data_with_queries(metric, block_size):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, 24)).astype(np.float32)
    queries = rng.standard_normal((150, 24)).astype(np.float32)
    dist, idx = knn(base, queries, k=9, config=NeighborConfig(metric=metric, block_size=block_size))
    full, sign = reference(base, queries, metric)
    assert_matches(dist, idx, full, sign, 9, atol=1e-4)
    expect_idx = np.argsort(sign * full, axis=1, kind="stable")[:, :9]
    assert (idx == expect_idx).mean() > 0.999


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_digits_exclude_self(metric):
    x = load_digits().data
    dist, idx = knn(x, k=10, config=NeighborConfig(metric=metric), exclude_self=True)
    full, sign = reference(x, x, metric)
    np.fill_diagonal(full, sign * np.inf)
    assert not (idx == np.arange(len(x))[:, None]).any()
    assert_matches(dist, idx, full, sign, 10, atol=1e-2)


def test_large_base_crosses_tile_and_group_boundaries():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((40_000, 8)).astype(np.float32)
    queries = rng.standard_normal((64, 8)).astype(np.float32)
    dist, idx = knn(base, queries, k=5)
    full, sign = reference(base, queries, "l2")
    assert_matches(dist, idx, full, sign, 5, atol=1e-4)


def test_k_as_large_as_base():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((50, 3)).astype(np.float32)
    dist, idx = knn(base, k=49, exclude_self=True)
    assert np.array_equal(np.sort(idx, axis=1), np.array([[j for j in range(50) if j != i] for i in range(50)]))
    assert (np.diff(dist, axis=1) >= 0).all()


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_duplicates_exclude_own_index_only(metric):
    rng = np.random.default_rng(3)
    points = rng.standard_normal((40, 5)).astype(np.float32)
    base = np.concatenate([points, points, points[:5], points[:5]])
    dist, idx = knn(base, k=3, config=NeighborConfig(metric=metric), exclude_self=True)
    n = len(points)
    assert not (idx == np.arange(len(base))[:, None]).any()
    copies = {i: {j for j in range(len(base)) if np.array_equal(base[j], base[i])} - {i} for i in range(len(base))}
    for i in range(len(base)):
        found = set(idx[i].tolist())
        assert copies[i] <= found or found <= copies[i]
    best = 0.0 if metric == "l2" else 1.0
    np.testing.assert_allclose(dist[:n, 0], best, atol=1e-5)


def test_many_duplicates_push_self_out_of_the_list():
    base = np.zeros((20, 4), dtype=np.float32)
    base[10:] = 1.0
    dist, idx = knn(base, k=3, exclude_self=True)
    assert not (idx == np.arange(20)[:, None]).any()
    assert ((idx < 10) == (np.arange(20) < 10)[:, None]).all()
    assert (dist == 0).all()


def test_zero_vectors_under_cosine():
    base = np.array([[0, 0], [1, 0], [0, 2], [3, 3]], dtype=np.float32)
    dist, idx = knn(base, np.array([[0.0, 0.0], [2.0, 0.0]]), k=2, config=NeighborConfig(metric="cosine"))
    assert np.isfinite(dist).all()
    np.testing.assert_allclose(dist[0], 0.0)
    assert idx[1, 0] == 1 and dist[1, 0] == pytest.approx(1.0)


def test_inputs_are_not_mutated_and_dtypes_coerced():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((100, 6))
    before = base.copy()
    queries = np.asfortranarray(base[:10] * 3)
    d1, i1 = knn(base, queries, k=4, config=NeighborConfig(metric="cosine"))
    d2, i2 = knn(base.astype(np.float32), np.ascontiguousarray(queries, dtype=np.float32), k=4, config=NeighborConfig(metric="cosine"))
    assert np.array_equal(base, before)
    assert np.array_equal(i1, i2) and np.allclose(d1, d2)
    assert knn(base.tolist(), k=2)[1].shape == (100, 2)


def test_index_searches_many_times_and_matches_knn():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((500, 10)).astype(np.float32)
    index = NeighborIndex(config=NeighborConfig()).fit(base)
    for seed in range(3):
        q = np.random.default_rng(seed).standard_normal((20, 10)).astype(np.float32)
        d, i = index.search(q, 6)
        d2, i2 = knn(base, q, k=6)
        assert np.array_equal(i, i2) and np.array_equal(d, d2)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_self_search_shares_tiles_and_matches_plain_search(metric):
    # queries=None runs the symmetric self-join (each block pair's product serves both blocks);
    # it must give what searching the base as explicit queries gives, across several blocks.
    rng = np.random.default_rng(5)
    base = rng.standard_normal((5000, 16)).astype(np.float32)
    base[4000:] = base[:1000]  # exact duplicates: ties broken the same way on both paths
    config = NeighborConfig(metric=metric, block_size=64)  # 64 x 2048 -> self blocks of 362 points
    index = NeighborIndex(config=config).fit(base)
    s_self, i_self = index.search(None, 6)
    s_plain, i_plain = index.search(base, 6)
    assert np.array_equal(i_self, i_plain)
    np.testing.assert_allclose(s_self, s_plain, rtol=1e-5, atol=1e-5)


def test_self_search_does_not_depend_on_thread_count():
    import torch

    rng = np.random.default_rng(6)
    base = np.repeat(rng.standard_normal((1500, 8)).astype(np.float32), 3, axis=0)  # every point thrice
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(knn(base, k=4, exclude_self=True, config=NeighborConfig(block_size=32)))
    finally:
        torch.set_num_threads(before)
    for dist, idx in results[1:]:
        assert np.array_equal(idx, results[0][1]) and np.array_equal(dist, results[0][0])


def test_locality_order_is_a_data_only_permutation_that_groups_clusters():
    from selectkit.neighbors.flat import locality_order
    from selectkit.neighbors.memory import Blocks

    rng = np.random.default_rng(8)
    centres = rng.normal(scale=50.0, size=(4, 8))
    labels = rng.integers(0, 4, 2000)
    base = (centres[labels] + rng.standard_normal((2000, 8))).astype(np.float32)
    order = locality_order(base, True, Blocks(64, 512, 2))
    assert np.array_equal(np.sort(order), np.arange(2000))
    assert np.array_equal(order, locality_order(base, True, Blocks(32, 256, 1))), "no randomness, no thread dependence"
    # Far-apart clusters: every seed's group lies in one cluster, so the order changes cluster
    # only where it moves from one seed's group to the next (at most one change per seed).
    changes = np.count_nonzero(np.diff(labels[order]))
    assert changes < 2000 // 128
    assert changes < np.count_nonzero(np.diff(labels)) / 50


@pytest.mark.parametrize("k", [5, 40])
def test_returned_l2_distances_are_direct_and_sorted(k):
    """The distances of the chosen pairs are computed directly (float64 sums, not the expansion the
    scan ranks by): within float32 rounding of a float64 reference, far from the origin too; each row
    comes back nearest first, a missing neighbour (-1) last with distance inf."""
    from selectkit.neighbors.search import _exact_l2

    rng = np.random.default_rng(3)
    base = (rng.standard_normal((500, 24)) + 100.0).astype(np.float32)  # far from the origin
    queries = (rng.standard_normal((70, 24)) + 100.0).astype(np.float32)
    idx = np.stack([rng.permutation(500)[:k] for _ in range(70)])
    idx[5, 2] = -1
    dist, out = _exact_l2(base, queries, idx, block=16)
    ref = ((base.astype(np.float64)[np.maximum(out, 0)] - queries.astype(np.float64)[:, None, :]) ** 2).sum(-1)
    ok = out >= 0
    np.testing.assert_allclose(dist[ok], ref[ok], rtol=2e-7)
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert out[5, -1] == -1 and np.isinf(dist[5, -1]) and (out[5] >= 0).sum() == k - 1
    assert all(sorted(map(int, a)) == sorted(map(int, b)) for a, b in zip(out, idx))


@pytest.mark.parametrize("backend", ["flat", "ivf"])
def test_far_from_the_origin_is_still_exact(backend):
    """Features far from the origin against their spread (offset 1000, unit spread: a year, a raw
    count): float32 scores expanded around the origin misrank nearly every neighbour there; the layer
    centres on the base mean and finds the float64 reference's neighbours, and the caller's arrays
    are left as they were."""
    from selectkit.neighbors.inputs import l2_shift

    rng = np.random.default_rng(5)
    base = (rng.standard_normal((3000, 16)) + 1000.0).astype(np.float32)
    queries = (rng.standard_normal((200, 16)) + 1000.0).astype(np.float32)
    kept_base, kept_queries = base.copy(), queries.copy()
    assert l2_shift(base) is not None and l2_shift(base - base.mean(0)) is None
    config = NeighborConfig(backend=backend, nlist=4, nprobe=4, exact_below=0)
    index = NeighborIndex(5, config).fit(base)
    dist, idx = index.search(queries, 5)
    full = ((queries.astype(np.float64)[:, None] - base.astype(np.float64)[None]) ** 2).sum(-1)
    ref = np.argsort(full, axis=1, kind="stable")[:, :5]
    assert np.mean([set(a) == set(b) for a, b in zip(idx, ref)]) == 1.0
    np.testing.assert_allclose(dist, np.take_along_axis(full, ref, 1), rtol=1e-5)
    _, own = index.search(None, 5, exclude_self=True)
    np.fill_diagonal(selfd := ((base.astype(np.float64)[:, None] - base.astype(np.float64)[None]) ** 2).sum(-1), np.inf)
    assert np.mean([set(a) == set(b) for a, b in zip(own, np.argsort(selfd, axis=1, kind="stable")[:, :5])]) == 1.0
    assert np.array_equal(base, kept_base) and np.array_equal(queries, kept_queries)


def test_kmeans_far_from_the_origin_matches_scikit_learn():
    """The same centring for Lloyd's iterations: at offset 1000 the assignment equals scikit-learn's
    float64 Lloyd from the same start, and the centroids come back in the data's own coordinates."""
    from sklearn.cluster import KMeans

    from selectkit.neighbors.kmeans import kmeans

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((4000, 12)) + 3.0 * rng.integers(0, 4, (4000, 1)) + 1000.0).astype(np.float32)
    init = X[:16].copy()
    ours = kmeans(X, 16, n_iter=15, init=init)
    ref = KMeans(16, init=init.astype(np.float64), n_init=1, max_iter=15, tol=0, algorithm="lloyd").fit(X.astype(np.float64))
    assert np.array_equal(ours.assignment, ref.labels_)
    np.testing.assert_allclose(ours.centroids, ref.cluster_centers_, atol=1e-3)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-5)
    assert np.array_equal(init, X[:16])
