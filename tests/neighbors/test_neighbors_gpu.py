"""FAISS GPU paths; skipped unless FAISS sees a GPU."""

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.neighbors import NeighborConfig, kmeans, knn

faiss = pytest.importorskip("faiss")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(getattr(faiss, "get_num_gpus", lambda: 0)() == 0, reason="FAISS sees no GPU"),
]


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_gpu_flat_matches_cpu(metric):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20_000, 32)).astype(np.float32)
    queries = rng.standard_normal((500, 32)).astype(np.float32)
    cpu = knn(base, queries, k=10, config=NeighborConfig(metric=metric))
    gpu = knn(base, queries, k=10, config=NeighborConfig(metric=metric, device="cuda"))
    assert (cpu[1] == gpu[1]).mean() > 0.99
    np.testing.assert_allclose(cpu[0], gpu[0], rtol=1e-3, atol=1e-3)


def test_gpu_ivf_and_kmeans():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((20_000, 16)).astype(np.float32)
    _, truth = knn(base, base[:200], k=10)
    _, found = knn(base, base[:200], k=10, config=NeighborConfig(backend="ivf", device="cuda", nprobe=64, exact_below=None))
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]) >= 0.9
    inertia_gpu = kmeans(base, 20, n_iter=5, config=NeighborConfig(device="cuda")).inertia
    inertia_cpu = kmeans(base, 20, n_iter=5).inertia
    assert abs(inertia_gpu - inertia_cpu) / inertia_cpu < 0.01


def test_gpu_k_cap():
    base = np.random.default_rng(2).standard_normal((3000, 4)).astype(np.float32)
    with pytest.raises(ConfigError, match="k=2049 exceeds the 2048"):
        knn(base, base[:3], k=2049, config=NeighborConfig(device="cuda"))
