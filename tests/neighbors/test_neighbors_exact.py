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
    centres = rng.normal(scale=50.0, size=(12, 8))
    labels = rng.integers(0, 12, 2000)
    base = (centres[labels] + rng.standard_normal((2000, 8))).astype(np.float32)
    order, groups = locality_order(base, True, Blocks(64, 512, 2))
    assert np.array_equal(np.sort(order), np.arange(2000))
    again, groups_again = locality_order(base, True, Blocks(32, 256, 1))
    assert np.array_equal(order, again) and np.array_equal(groups, groups_again), "no randomness, no thread dependence"
    assert np.all(np.diff(groups) >= 0) and groups.max() == 2000 // 128 - 1
    # 15 seeds, 12 far-apart clusters: the farthest-first spread gives every cluster a seed of its
    # own, so no group holds two clusters.
    for g in np.unique(groups):
        assert np.unique(labels[order][groups == g]).size == 1


def test_farthest_first_spreads_over_far_clusters():
    from selectkit.neighbors.flat import farthest_first

    rng = np.random.default_rng(2)
    centres = rng.normal(scale=100.0, size=(6, 5))
    labels = np.repeat(np.arange(6), 50)
    points = (centres[labels] + rng.standard_normal((300, 5))).astype(np.float32)
    taken = farthest_first(points, 6)
    assert taken[0] == 0 and np.unique(labels[taken]).size == 6  # one per cluster, whatever their sizes
    assert np.array_equal(taken, farthest_first(points, 6))


def _kth_reference(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every point's k nearest others by float64 brute force, ties to the smaller index."""
    p = points.astype(np.float64)
    d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(p)), d2.shape), d2), axis=1)[:, :k]
    return np.take_along_axis(d2, order, 1), order


def _check_against_plain_and_reference(index: NeighborIndex, points: np.ndarray, k: int) -> None:
    """The self-join equals the plain search of the points as queries (which skips nothing) exactly,
    and its distances are a float64 brute force's to within float32 scores' resolution (no
    neighbour nearer than the k-th was lost)."""
    dist, idx = index.search(None, k, exclude_self=True)
    plain_d, plain_i = index.search(points, k + 1)
    keep = plain_i != np.arange(len(points))[:, None]
    keep[keep.all(axis=1), -1] = False
    assert np.array_equal(idx, plain_i[keep].reshape(-1, k))
    assert np.array_equal(dist, plain_d[keep].reshape(-1, k))
    ref_d, _ = _kth_reference(points, k)
    centred = points.astype(np.float64) - points.mean(axis=0)
    resolution = 2.0**-22 * points.shape[1] * (centred**2).sum(axis=1).max()  # of a float32 score
    assert resolution < 0.01 * np.median(ref_d[:, -1])
    np.testing.assert_allclose(dist, ref_d, rtol=0, atol=resolution)


@pytest.mark.parametrize("spread, k", [(12.0, 5), (0.0, 5), (12.0, 20)])  # k = 20: heap walks, not sorted inserts
def test_self_join_skips_far_chunk_pairs_and_keeps_the_exact_result(spread, k):
    """Far-apart clusters: most chunk pairs lie farther apart than their k-th distances, so their
    products are skipped (the share of pair scores computed is small), and the result is that of a
    search that skips nothing. Without clusters (spread 0) nothing can be skipped."""
    rng = np.random.default_rng(11)
    centres = rng.normal(scale=spread, size=(20, 16))
    points = (centres[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, 16)) + 500.0).astype(np.float32)
    index = NeighborIndex(config=NeighborConfig(block_size=32)).fit(points)  # self blocks of 256 points
    _check_against_plain_and_reference(index, points, k)
    index.search(None, k, exclude_self=True)
    share = index._engine.self_join_share
    if spread:
        assert share < 0.2, share
    else:
        assert share > 0.9, share


def test_self_join_with_tiny_clusters_and_duplicates():
    """Clusters smaller than k + 1 (a chunk's own search cannot fill its heaps, so nothing may be
    skipped for it) beside far clusters and duplicated points."""
    rng = np.random.default_rng(12)
    big = rng.normal(scale=15.0, size=(8, 6))[rng.integers(0, 8, 1500)] + rng.standard_normal((1500, 6))
    tiny = rng.normal(scale=15.0, size=(30, 6))[np.repeat(np.arange(30), 3)] + rng.standard_normal((90, 6))
    points = np.concatenate([big, tiny, big[:200]]).astype(np.float32)
    index = NeighborIndex(config=NeighborConfig(block_size=16)).fit(points)
    _check_against_plain_and_reference(index, points, 6)


def test_sorted_scan_matches_the_heap_scan():
    """`scan_tile_sorted` leaves the same k best as `scan_tile`, from empty and from part-filled heaps,
    with tied scores (duplicate rows) broken by the smaller index."""
    from selectkit.neighbors.flat import _sorted, scan_tile, scan_tile_sorted

    rng = np.random.default_rng(13)
    tile = rng.standard_normal((90, 40)).astype(np.float32)
    tile[50:60] = tile[10:20]  # ties
    bias = rng.random(90).astype(np.float32)
    bias[50:60] = bias[10:20]
    ids = rng.permutation(1000)[:90].astype(np.int64)
    for start in (None, 30):
        results = []
        for scan in (scan_tile, scan_tile_sorted):
            heap_s = np.full((40, 7), -np.inf, dtype=np.float32)
            heap_i = np.full((40, 7), -1, dtype=np.int64)
            worst = np.full(40, -np.inf, dtype=np.float32)
            if start:
                scan_tile(tile[:start], bias[:start], ids[:start], heap_s, heap_i, worst)
            rest = slice(start or 0, None)
            scan(tile[rest], bias[rest], ids[rest], heap_s, heap_i, worst)
            assert np.array_equal(worst, heap_s.min(axis=1))
            results.append(_sorted(heap_s, heap_i))
        assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


def test_short_jobs_run_on_the_calling_thread():
    import threading

    from selectkit.neighbors.flat import PARALLEL_MIN, run_workers

    seen = []
    run_workers(lambda: seen.append(threading.get_ident()), 4, workers=2, per_job=PARALLEL_MIN / 2)
    assert seen == [threading.get_ident()]  # one worker, on this thread
    seen.clear()
    run_workers(lambda: seen.append(threading.get_ident()), 4, workers=2, per_job=PARALLEL_MIN * 2)
    assert len(seen) == 2 and threading.get_ident() not in seen  # two workers, on the pool


@pytest.mark.parametrize("k", [5, 40])  # 40: wider than the insertion sort
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_returned_scores_are_direct_and_rows_sorted_by_score_then_index(k, metric):
    """The scores of the chosen pairs are computed directly (float64 sums, not the expansion the
    scan ranks by): within float32 rounding of a float64 reference, far from the origin too; each row
    comes back best first, equal scores (duplicated rows, listed in the wrong order) by ascending
    index, a missing neighbour (-1) last with score inf (L2) or -inf."""
    from selectkit.neighbors.rescore import rescored

    rng = np.random.default_rng(3)
    base = (rng.standard_normal((500, 24)) + 100.0).astype(np.float32)  # far from the origin
    base[250:] = base[:250]
    queries = (rng.standard_normal((70, 24)) + 100.0).astype(np.float32)
    others = [rng.permutation(np.setdiff1d(np.arange(500), [j, j + 250]))[: k - 2] for j in range(70)]
    idx = np.stack([np.concatenate([[j + 250, j], rest]) for j, rest in enumerate(others)])  # twins, the larger index first
    idx[5, 2] = -1
    l2 = metric == "l2"
    dist, out = rescored(base, queries, idx, l2, block=16)
    b, q = base.astype(np.float64)[np.maximum(out, 0)], queries.astype(np.float64)[:, None, :]
    ref = ((b - q) ** 2).sum(-1) if l2 else (b * q).sum(-1)
    ok = out >= 0
    np.testing.assert_allclose(dist[ok], ref[ok], rtol=2e-7)
    sign = 1.0 if l2 else -1.0
    step = np.diff(sign * dist.astype(np.float64), axis=1)
    assert np.all(step >= 0) and np.all(np.diff(out, axis=1)[step == 0] > 0)
    assert all(np.flatnonzero(row == j)[0] < np.flatnonzero(row == j + 250)[0] for j, row in zip(range(70), out) if j + 250 in row)
    assert out[5, -1] == -1 and dist[5, -1] == sign * np.inf and (out[5] >= 0).sum() == k - 1
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
    config = NeighborConfig(backend=backend, nlist=4, nprobe=4, exact_below=0, exact_self_below=0)
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
