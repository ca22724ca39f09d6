"""Below ``neighbors.exact_below`` base points the approximate backends run exact search, and say so."""

import logging

import numpy as np
import pytest

from selectkit.neighbors import NeighborConfig, NeighborIndex, estimate_memory_bytes, knn
from selectkit.neighbors.config import EXACT_BELOW


def points(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_below_the_crossover_search_is_exact_and_reported(backend, caplog):
    base, queries = points(3000, 8, 0), points(200, 8, 1)
    config = NeighborConfig(backend=backend, nprobe=1, ef_search=8, exact_below=3001)
    with caplog.at_level(logging.INFO, logger="selectkit.neighbors"):
        index = NeighborIndex(config=config).fit(base)
    assert index.exact_fallback_ and index.backend_ == "flat"
    lines = [r.getMessage() for r in caplog.records if r.name == "selectkit.neighbors"]
    assert len(lines) == 1 and "n=3000 below crossover" in lines[0] and lines[0].endswith(f"exact search instead of {backend}")
    assert np.array_equal(index.search(queries, 10)[1], knn(base, queries, k=10)[1])


def test_above_the_crossover_the_approximate_index_runs(caplog):
    base, queries = points(3000, 8, 0), points(200, 8, 1)
    exact = knn(base, queries, k=10)[1]
    for exact_below in (3000, None, 0):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="selectkit.neighbors"):
            index = NeighborIndex(config=NeighborConfig(backend="ivf", nprobe=1, exact_below=exact_below)).fit(base)
        assert not index.exact_fallback_ and index.backend_ == "ivf"
        assert type(index._engine).__name__ == "IVFEngine"
        assert not [r for r in caplog.records if r.name == "selectkit.neighbors"]
        # one probed list of about 30: approximate, so some neighbours differ from the exact ones
        assert not np.array_equal(index.search(queries, 10)[1], exact)


def test_exact_configs_never_report_a_fallback():
    index = NeighborIndex().fit(points(100, 4, 2))
    assert index.backend_ == "flat" and not index.exact_fallback_


def test_default_is_the_measured_crossover_and_memory_estimate_follows_it():
    assert NeighborConfig().exact_below == EXACT_BELOW > 0
    n, d = EXACT_BELOW - 1, 32
    approx, flat = NeighborConfig(backend="ivf"), NeighborConfig()
    assert estimate_memory_bytes(n, n, d, 5, approx) == estimate_memory_bytes(n, n, d, 5, flat)
    assert estimate_memory_bytes(EXACT_BELOW, EXACT_BELOW, d, 5, approx) != estimate_memory_bytes(EXACT_BELOW, EXACT_BELOW, d, 5, flat)
