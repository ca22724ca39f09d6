"""k-means against scikit-learn's Lloyd at equal work (same initial centroids, same iterations), and
weighted k-means against a float64 numpy reference."""

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
    r = kmeans(x, 10, n_iter=n_iter, init=init)
    centroids, labels, inertia = r.centroids, r.assignment, r.inertia
    ref = sklearn_lloyd(x, init, n_iter)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    assert centroids.shape == (10, 64) and labels.shape == (len(x),) and labels.dtype == np.int64
    assert (labels == ref.labels_).mean() > 0.99


def test_random_blobs_and_assignment_through_the_layer():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((20, 8)) * 5)[rng.integers(0, 20, 6000)] + rng.standard_normal((6000, 8))
    init = x[rng.choice(len(x), 20, replace=False)]
    r = kmeans(x, 20, n_iter=15, init=init)
    centroids, labels, inertia = r.centroids, r.assignment, r.inertia
    ref = sklearn_lloyd(x.astype(np.float32), init.astype(np.float32), 15)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    dist, nearest = knn(centroids, x, k=1)
    assert np.array_equal(labels, nearest[:, 0])
    assert inertia == pytest.approx(float(dist.sum(dtype=np.float64)))
    np.testing.assert_array_equal(r.distances, dist[:, 0])
    assert r.distances.dtype == np.float32 and 1 <= r.n_iter <= 15


def test_seeded_without_init_and_no_subsampling():
    x = np.random.default_rng(2).standard_normal((3000, 4)).astype(np.float32)
    a = kmeans(x, 5, n_iter=5, seed=3)
    b = kmeans(x, 5, n_iter=5, seed=3)
    assert np.array_equal(a.centroids, b.centroids) and a.inertia == b.inertia
    assert len(np.unique(a.assignment)) == 5


def test_cosine_is_spherical_and_bad_arguments():
    x = np.abs(np.random.default_rng(4).standard_normal((500, 6)))
    r = kmeans(x, 4, n_iter=5, config=NeighborConfig(metric="cosine"))
    np.testing.assert_allclose(np.linalg.norm(r.centroids, axis=1), 1.0, rtol=1e-5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    want = ((unit - r.centroids[r.assignment].astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(r.distances, want, rtol=1e-4, atol=1e-6)
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
    r = kmeans(x, 10, n_iter=20, init=init)
    centroids, labels, inertia = r.centroids, r.assignment, r.inertia
    ref = sklearn_lloyd(x, init, 20)
    assert abs(inertia - ref.inertia_) / ref.inertia_ < 0.005
    assert len(np.unique(labels)) == 10
    assert np.abs(centroids).max() < 100


def test_subsampled_training_still_assigns_every_point():
    x = np.random.default_rng(6).standard_normal((5000, 3)).astype(np.float32)
    r = kmeans(x, 4, n_iter=5, seed=1, max_points_per_centroid=50)
    centroids, labels, inertia = r.centroids, r.assignment, r.inertia
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
    first = runs[0]
    for r in runs[1:]:
        assert np.array_equal(r.centroids, first.centroids) and np.array_equal(r.assignment, first.assignment)
        assert r.inertia == first.inertia and r.n_iter == first.n_iter


def weighted_lloyd_reference(x, w, init, n_iter):
    """Weighted Lloyd in float64 numpy (dense distances: small data only); stops when labels settle."""
    c = init.astype(np.float64)
    x = x.astype(np.float64)
    labels = None
    for _ in range(n_iter):
        new = ((x[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            mass = w[labels == j].sum()
            if mass > 0:
                c[j] = (w[labels == j, None] * x[labels == j]).sum(0) / mass
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(2)
    labels = d2.argmin(1)
    return c, labels, float((w * d2[np.arange(len(x)), labels]).sum())


def blobs(n, d, centres, seed):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)) * 4
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_weighted_matches_float64_reference():
    x = blobs(1500, 6, 8, 10)
    rng = np.random.default_rng(11)
    w = rng.gamma(0.7, 2.0, len(x))
    w[rng.random(len(x)) < 0.1] = 0.0
    init = x[rng.choice(len(x), 8, replace=False)]
    r = kmeans(x, 8, n_iter=25, init=init, sample_weight=w)
    c_ref, labels_ref, inertia_ref = weighted_lloyd_reference(x, w, init, 25)
    np.testing.assert_allclose(r.centroids, c_ref, rtol=1e-4, atol=1e-4)
    assert (r.assignment == labels_ref).mean() > 0.999
    assert r.inertia == pytest.approx(inertia_ref, rel=1e-4)
    assert r.inertia == pytest.approx(float(np.dot(r.distances.astype(np.float64), w)), rel=1e-9)
    plain = kmeans(x, 8, n_iter=25, init=init)
    assert not np.allclose(plain.centroids, r.centroids, atol=1e-3), "weights must move the centroids"


def test_integer_weights_equal_repeated_rows():
    x = blobs(2000, 5, 6, 12)
    rng = np.random.default_rng(13)
    w = rng.integers(0, 4, len(x))
    init = x[rng.choice(np.flatnonzero(w > 0), 6, replace=False)]
    weighted = kmeans(x, 6, n_iter=30, init=init, sample_weight=w)
    repeated = kmeans(np.repeat(x, w, axis=0), 6, n_iter=30, init=init)
    np.testing.assert_allclose(weighted.centroids, repeated.centroids, rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.repeat(weighted.assignment, w), repeated.assignment)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-6)
    assert weighted.n_iter == repeated.n_iter


def test_weighted_result_does_not_depend_on_thread_count():
    import torch

    x = blobs(20_000, 12, 30, 14)
    w = np.random.default_rng(15).random(len(x))
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            runs.append(kmeans(x, 30, n_iter=8, seed=2, sample_weight=w))
    finally:
        torch.set_num_threads(before)
    for r in runs[1:]:
        assert np.array_equal(r.centroids, runs[0].centroids) and r.inertia == runs[0].inertia


def test_empty_weighted_cluster_restarts_at_far_point():
    # A centre that only zero-weight points reach has no mass: it restarts at the farthest point.
    x = blobs(3000, 4, 5, 16)
    w = np.ones(len(x))
    init = np.concatenate([x[:4], np.full((1, 4), 500.0, dtype=np.float32)])
    r = kmeans(x, 5, n_iter=20, init=init, sample_weight=w)
    assert len(np.unique(r.assignment)) == 5 and np.abs(r.centroids).max() < 100


@pytest.mark.parametrize(
    "weights, message",
    [
        (lambda n: -np.ones(n), "sample_weight must be non-negative"),
        (lambda n: np.full(n, np.nan), "sample_weight must be finite"),
        (lambda n: np.r_[np.ones(n - 1), np.inf], "sample_weight must be finite"),
        (lambda n: np.ones(n - 1), "sample_weight has shape"),
        (lambda n: np.zeros(n), "sample_weight must not be all zero"),
        (lambda n: np.array(["a"] * n), "sample_weight must be numeric"),
    ],
)
def test_bad_weights_are_one_line_config_errors(weights, message):
    from selectkit.errors import ConfigError

    x = blobs(200, 3, 4, 17)
    with pytest.raises(ConfigError, match=message) as err:
        kmeans(x, 4, sample_weight=weights(len(x)))
    assert "\n" not in str(err.value)


def _imported_modules(module):
    import ast
    import importlib

    tree = ast.parse(open(importlib.import_module(module).__file__).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_lloyd_sits_below_kmeans_and_ivf():
    # No import circle: Lloyd's loop needs neither search nor IVF, and IVF training needs no k-means front end.
    lloyd = _imported_modules("selectkit.neighbors.lloyd")
    assert not lloyd & {"selectkit.neighbors.search", "selectkit.neighbors.ivf", "selectkit.neighbors.kmeans"}
    ivf = _imported_modules("selectkit.neighbors.ivf")
    assert "selectkit.neighbors.lloyd" in ivf and not ivf & {"selectkit.neighbors.kmeans", "selectkit.neighbors.search"}


def test_result_does_not_depend_on_numba_thread_count_and_restores_it():
    import numba

    x = blobs(30_000, 10, 25, 18)
    w = np.random.default_rng(19).random(len(x))
    before = numba.get_num_threads()
    try:
        runs = []
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            runs.append((kmeans(x, 25, n_iter=6, seed=4), kmeans(x, 25, n_iter=6, seed=4, sample_weight=w)))
            assert numba.get_num_threads() == threads
    finally:
        numba.set_num_threads(before)
    for plain, weighted in runs[1:]:
        assert np.array_equal(plain.centroids, runs[0][0].centroids) and plain.inertia == runs[0][0].inertia
        assert np.array_equal(weighted.centroids, runs[0][1].centroids) and weighted.inertia == runs[0][1].inertia


def test_lloyd_blocks_depend_on_shape_only_and_cap_partial_sums():
    from selectkit.neighbors.lloyd import PART_BYTES, SUM_BLOCK, layout, partial_sums_bytes

    assert layout(100_000, 100, 64) == (SUM_BLOCK, 512)
    block, chunk = layout(200_000, 2000, 512)
    assert block > SUM_BLOCK and 1 <= chunk <= block
    assert partial_sums_bytes(200_000, 2000, 512) <= PART_BYTES + 2000 * 2 * 8 * (-(-200_000 // block))


def _kmeans_in_child(queue):
    x = blobs(20_000, 8, 10, 20)
    queue.put(kmeans(x, 10, n_iter=5, seed=1).inertia)


def test_kmeans_runs_in_a_forked_child_after_the_parent_used_it():
    # GNU OpenMP is not fork-safe: numba ends a forked child that enters its parent's thread pool.
    # The child must fall back to its own thread and give the parent's result.
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    expected = kmeans(blobs(20_000, 8, 10, 20), 10, n_iter=5, seed=1).inertia
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_kmeans_in_child, args=(queue,))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert queue.get(timeout=10) == expected


def test_kmeans_keeps_torch_thread_count_when_numba_threads_start():
    # Starting numba's OpenMP pool sets the process's OpenMP thread count; torch's setting must survive it.
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from selectkit.neighbors import kmeans\n"
        "kmeans(np.random.default_rng(0).standard_normal((9000, 4)).astype(np.float32), 3, n_iter=2)\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"
