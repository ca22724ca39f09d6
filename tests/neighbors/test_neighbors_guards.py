"""Memory-cap refusal before any allocation, and one-line errors for bad inputs and settings."""

import tracemalloc

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.neighbors import MemoryCapExceeded, NeighborConfig, NeighborIndex, estimate_memory_bytes, kmeans, knn


def huge_view(n, d):
    """An ``[n, d]`` array that occupies a few bytes (every row is a view of the same row)."""
    return np.broadcast_to(np.ones((1, d), dtype=np.float64), (n, d))


def test_cap_refuses_before_allocating():
    base = huge_view(20_000_000, 64)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryCapExceeded, match=r"neighbors\.memory_cap_gb=0\.5 is below the [0-9.]+ GB") as err:
            knn(base, k=10, config=NeighborConfig(memory_cap_gb=0.5), exclude_self=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000
    assert "\n" not in str(err.value) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("call", ["index", "search", "kmeans"])
def test_every_entry_point_checks_the_cap(call):
    config = NeighborConfig(memory_cap_gb=0.01)
    big = huge_view(100_000, 64)
    with pytest.raises(MemoryCapExceeded, match="memory_cap_gb"):
        if call == "index":
            NeighborIndex(config=config).fit(big)
        elif call == "search":
            index = NeighborIndex(config=NeighborConfig(memory_cap_gb=0.02)).fit(np.zeros((1000, 64), np.float32))
            index.config = config
            index._config = config
            index.search(big, 5)
        else:
            kmeans(big, 10, config=config)


def test_estimate_grows_with_the_job_and_block_size_shrinks_to_fit():
    small = estimate_memory_bytes(10_000, 1_000, 32, 10, NeighborConfig())
    large = estimate_memory_bytes(1_000_000, 100_000, 32, 10, NeighborConfig())
    assert 0 < small < large
    assert large >= 1_000_000 * 32 * 4
    tight = NeighborConfig(memory_cap_gb=0.05)
    assert estimate_memory_bytes(100_000, 10_000, 32, 10, tight) <= 0.05e9
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20_000, 32)).astype(np.float32)
    a = knn(base, base[:100], k=5, config=tight)
    b = knn(base, base[:100], k=5)
    assert np.array_equal(a[1], b[1])


def test_fixed_block_size_too_large_names_block_size():
    config = NeighborConfig(block_size=100_000, memory_cap_gb=0.5)
    with pytest.raises(MemoryCapExceeded, match="lower neighbors.block_size"):
        knn(huge_view(100_000, 16), k=5, config=config, exclude_self=True)


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), "base contains NaN values"),
        (np.array([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0]]), "base contains infinite"),
        (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), "non-numeric"),
        (np.array([[1, "x"], [2, 3], [4, 5]], dtype=object), "non-numeric"),
        (np.arange(5.0), "must be 2-D"),
        (np.zeros((0, 3)), "at least one row"),
        (np.array([[1e39, 0.0], [0.0, 1.0], [2.0, 2.0]]), "infinite"),
    ],
)
def test_bad_base(bad, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        knn(bad, k=1)
    assert "\n" not in str(err.value)


def test_bad_queries_and_k():
    base = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="queries contains NaN"):
        knn(base, np.array([[np.nan, 0, 0]]), k=1)
    with pytest.raises(ValueError, match="4 features but the base has 3"):
        knn(base, np.zeros((2, 4)), k=1)
    with pytest.raises(ValueError, match="k=11 exceeds the 10 base points"):
        knn(base, np.zeros((2, 3)), k=11)
    with pytest.raises(ValueError, match="k=10 exceeds the 9 other base points"):
        knn(base, k=10, exclude_self=True)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k="):
            knn(base, k=k)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(base, base, k=2, exclude_self=True)


@pytest.mark.parametrize(
    "field, value",
    [("backend", "annoy"), ("metric", "manhattan"), ("device", "tpu"), ("engine", "mkl"), ("nprobe", 0), ("block_size", -3), ("memory_cap_gb", 0), ("exact_below", -1), ("exact_below", 2.5)],
)
def test_config_rejects_bad_settings(field, value):
    with pytest.raises(ConfigError, match=f"neighbors.{field}="):
        NeighborConfig(**{field: value})


def test_cuda_without_gpu_is_a_clear_error():
    from selectkit.neighbors.backend import faiss_gpus

    if faiss_gpus() > 0:
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="neighbors.device='cuda'"):
        knn(np.zeros((5, 2)), k=1, config=NeighborConfig(device="cuda"))
    assert knn(np.eye(5), k=1, config=NeighborConfig(device="auto"))[1].shape == (5, 1)


def test_without_faiss_cpu_search_runs_and_faiss_settings_say_what_to_install(monkeypatch):
    import sys

    from selectkit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails, as without the extra
    x = np.random.default_rng(3).standard_normal((500, 8)).astype(np.float32)
    exact = knn(x, k=4, exclude_self=True)[1]
    ivf = knn(x, k=4, config=NeighborConfig(backend="ivf", nlist=4, nprobe=4, exact_below=None, exact_self_below=None), exclude_self=True)[1]
    assert np.array_equal(exact, ivf), "all lists probed: IVF is exhaustive"
    assert np.array_equal(exact, knn(x, k=4, config=NeighborConfig(backend="hnsw"), exclude_self=True)[1]), "small base: exact fallback"
    for config in (NeighborConfig(backend="hnsw", exact_below=None, exact_self_below=None), NeighborConfig(engine="faiss")):
        with pytest.raises(MissingDependencyError, match=r"selectkit\[faiss\]"):
            knn(x, k=4, config=config)
