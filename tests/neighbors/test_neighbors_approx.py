"""IVF and HNSW recall against exact search on a modest set (the exact fallback turned off: ``exact_below=None``)."""

import numpy as np
import pytest

from selectkit.neighbors import NeighborConfig, NeighborIndex, knn


def clustered(n, d, seed):
    """Points around 50 centres: the structure approximate indexes are built for."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)) * 4
    return (centres[rng.integers(0, 50, n)] + rng.standard_normal((n, d))).astype(np.float32)


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_recall_against_exact(backend, metric):
    if backend == "hnsw":
        pytest.importorskip("faiss")  # HNSW is a FAISS index (the `faiss` extra)
    base = clustered(8000, 32, 0)
    queries = clustered(300, 32, 1)
    _, truth = knn(base, queries, k=10, config=NeighborConfig(metric=metric))
    # Inner products are not a metric; the HNSW graph needs a wider search to hold the same recall.
    ef = 256 if (backend, metric) == ("hnsw", "ip") else NeighborConfig.ef_search
    dist, found = knn(base, queries, k=10, config=NeighborConfig(exact_below=None, exact_self_below=None, backend=backend, metric=metric, ef_search=ef))
    assert recall(found, truth) >= 0.9
    assert dist.dtype == np.float32 and found.dtype == np.int64


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_exclude_self_approximate(backend):
    if backend == "hnsw":
        pytest.importorskip("faiss")  # HNSW is a FAISS index (the `faiss` extra)
    base = clustered(4000, 16, 2)
    _, truth = knn(base, k=5, exclude_self=True)
    dist, found = knn(base, k=5, config=NeighborConfig(exact_below=None, exact_self_below=None, backend=backend), exclude_self=True)
    assert not (found == np.arange(len(base))[:, None]).any()
    assert recall(found, truth) >= 0.9
    assert (np.diff(dist, axis=1) >= 0).all()


def test_ivf_defaults_probe_more_than_one_list():
    config = NeighborConfig(exact_below=None, exact_self_below=None, backend="ivf")
    assert config.nprobe == 16
    index = NeighborIndex(config=config).fit(clustered(4000, 8, 3))
    assert index._engine.nprobe == 16 and index._engine.nlist > 16


def test_ivf_training_sample_is_seeded():
    base = clustered(6000, 8, 4)
    config = NeighborConfig(exact_below=None, exact_self_below=None, backend="ivf", train_size=2000, seed=7, nprobe=2)
    a = knn(base, base[:50], k=5, config=config)
    b = knn(base, base[:50], k=5, config=config)
    assert np.array_equal(a[1], b[1])


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ivf_probing_every_list_is_exact(metric):
    # With nprobe = nlist every base point is scanned, so the layer's IVF must equal exact search.
    base = clustered(3000, 12, 5)
    queries = clustered(200, 12, 6)
    config = NeighborConfig(exact_below=None, exact_self_below=None, backend="ivf", metric=metric, nlist=20, nprobe=20)
    dist, idx = knn(base, queries, k=7, config=config)
    ref_dist, ref_idx = knn(base, queries, k=7, config=NeighborConfig(metric=metric))
    assert np.array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6)


def test_ivf_results_do_not_depend_on_thread_count():
    import torch

    base = clustered(5000, 16, 7)
    config = NeighborConfig(exact_below=None, exact_self_below=None, backend="ivf", nprobe=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = knn(base, k=6, config=config, exclude_self=True)
        torch.set_num_threads(2)
        two = knn(base, k=6, config=config, exclude_self=True)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one[1], two[1]) and np.array_equal(one[0], two[0])
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("backend", ["flat", "ivf"])
def test_faiss_engine_on_cpu(backend):
    # engine='faiss' runs FAISS's own CPU indexes: same exact neighbours, comparable IVF recall.
    pytest.importorskip("faiss")
    base = clustered(6000, 16, 8)
    queries = clustered(300, 16, 9)
    _, truth = knn(base, queries, k=10)
    index = NeighborIndex(config=NeighborConfig(exact_below=None, exact_self_below=None, backend=backend, engine="faiss")).fit(base)
    assert type(index._engine).__module__.startswith("faiss")
    _, found = index.search(queries, 10)
    if backend == "flat":
        assert recall(found, truth) == 1.0
    else:
        assert recall(found, truth) >= 0.9
