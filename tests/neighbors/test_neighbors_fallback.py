"""Below ``neighbors.exact_below`` base points (at d=64, scaled by sqrt(64/d)) the approximate
backends run exact search, and say so."""

import logging

import numpy as np
import pytest

from selectkit.neighbors import NeighborConfig, NeighborIndex, estimate_memory_bytes, knn
from selectkit.neighbors.config import EXACT_BELOW, EXACT_BELOW_DIM, exact_threshold


def points(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d)) * 3
    return (centres[rng.integers(0, 30, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("backend", ["ivf", "hnsw"])
def test_below_the_crossover_search_is_exact_and_reported(backend, caplog):
    base, queries = points(3000, 8, 0), points(200, 8, 1)
    config = NeighborConfig(backend=backend, nprobe=1, ef_search=8, exact_below=1061)  # 1061 * sqrt(64 / 8) = 3001
    with caplog.at_level(logging.INFO, logger="selectkit.neighbors"):
        index = NeighborIndex(config=config).fit(base)
    assert index.exact_fallback_ and index.backend_ == "flat"
    lines = [r.getMessage() for r in caplog.records if r.name == "selectkit.neighbors"]
    assert exact_threshold(config, 8) == 3001
    assert len(lines) == 1 and "n=3000 below crossover 3001" in lines[0] and lines[0].endswith(f"exact search instead of {backend}")
    assert np.array_equal(index.search(queries, 10)[1], knn(base, queries, k=10)[1])


def test_above_the_crossover_the_approximate_index_runs(caplog):
    base, queries = points(3000, 8, 0), points(200, 8, 1)
    exact = knn(base, queries, k=10)[1]
    for exact_below in (1060, None, 0):  # 1060 * sqrt(8) = 2998 points
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


def test_threshold_scales_with_dimension():
    config = NeighborConfig(backend="ivf")
    assert config.exact_below == EXACT_BELOW > 0 and exact_threshold(config, EXACT_BELOW_DIM) == EXACT_BELOW
    assert exact_threshold(config, 4 * EXACT_BELOW_DIM) == EXACT_BELOW // 2
    assert exact_threshold(config, EXACT_BELOW_DIM // 4) == 2 * EXACT_BELOW
    assert exact_threshold(NeighborConfig(exact_below=None), 32) == exact_threshold(NeighborConfig(exact_below=0), 32) == 0
    # A base of 40,000 points: exact at d=64 (below 60k), IVF at d=256 (threshold 30k).
    assert NeighborIndex(config=config).fit(points(40_000, 64, 3)).exact_fallback_
    assert not NeighborIndex(config=config).fit(points(40_000, 256, 3)).exact_fallback_


def test_memory_estimate_follows_the_fallback():
    d = 32
    n = exact_threshold(NeighborConfig(), d) - 1
    approx, flat = NeighborConfig(backend="ivf"), NeighborConfig()
    assert estimate_memory_bytes(n, n, d, 5, approx) == estimate_memory_bytes(n, n, d, 5, flat)
    assert estimate_memory_bytes(n + 1, n + 1, d, 5, approx) != estimate_memory_bytes(n + 1, n + 1, d, 5, flat)


def test_self_joins_fall_back_below_their_own_crossover(caplog):
    """An index searched against its own base follows ``exact_self_below``; one searched with other
    queries follows ``exact_below``; `knn` tells them apart by whether it has queries."""
    import logging

    config = NeighborConfig(backend="ivf", exact_below=1_000, exact_self_below=5_000)
    base = points(3_000, 64, 4)
    assert NeighborIndex(config=config, self_join=True).fit(base).exact_fallback_
    assert not NeighborIndex(config=config).fit(base).exact_fallback_
    with caplog.at_level(logging.INFO, logger="selectkit.neighbors"):
        knn(base, k=3, exclude_self=True, config=config)
    assert "neighbors.exact_self_below=5000" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="selectkit.neighbors"):
        knn(base, base[:10], k=3, config=config)
    assert "below crossover" not in caplog.text
    with pytest.raises(Exception, match="neighbors.exact_self_below"):
        NeighborConfig(exact_self_below=-1)


def test_knn_checks_the_memory_cap_of_the_search_that_runs(monkeypatch):
    """A self-search below ``exact_self_below`` runs exactly, so `knn` checks the exact search's
    estimate; with other queries the same base runs IVF and IVF's estimate is checked."""
    import selectkit.neighbors.search as search

    checked = []
    real = search.check_cap
    monkeypatch.setattr(search, "check_cap", lambda *a, **kw: checked.append(a[4].backend) or real(*a, **kw))
    config = NeighborConfig(backend="ivf", exact_below=1_000, exact_self_below=5_000)
    base = points(3_000, 64, 5)
    knn(base, k=3, exclude_self=True, config=config)
    assert checked[0] == "flat"
    checked.clear()
    knn(base, base[:10], k=3, config=config)
    assert checked[0] == "ivf"
