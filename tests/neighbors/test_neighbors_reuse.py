"""An index is built once and searched many times: by `NeighborIndex` users and by the SMOTE family.

The build counter (`selectkit.neighbors.search.build_count`) counts every `NeighborIndex.fit`.
"""

import numpy as np
import pytest

from selectkit.neighbors import NeighborConfig, NeighborIndex, knn
from selectkit.neighbors.search import build_count


def points(n, d, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d)) * 3
    return (centres[rng.integers(0, 20, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("config", [NeighborConfig(), NeighborConfig(backend="ivf", nprobe=4)])
def test_one_build_many_query_sets(config):
    base = points(5000, 16, 0)
    query_sets = [points(m, 16, s) for m, s in ((300, 1), (1, 2), (1200, 3))]
    before = build_count()
    index = NeighborIndex(config=config).fit(base)
    found = [index.search(q, 7) for q in query_sets] + [index.search(None, 5, exclude_self=True)]
    found.append(index.kneighbors(query_sets[0], 3))
    assert build_count() - before == 1
    for q, (dist, idx) in zip(query_sets, found):
        ref_dist, ref_idx = knn(base, q, k=7, config=config)
        assert np.array_equal(idx, ref_idx) and np.array_equal(dist, ref_dist)
    ref = knn(base, k=5, config=config, exclude_self=True)
    assert np.array_equal(found[3][1], ref[1])
    assert build_count() - before == 1 + len(query_sets) + 1, "each knn call builds its own index"


# ------------------------------------------------------------------------------------------------ SMOTE family


def three_classes():
    """Three overlapping classes (600 / 120 / 80 points), so borderline points and hard points exist."""
    rng = np.random.default_rng(4)
    sizes = (600, 120, 80)
    centres = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.5, 0.0]])
    X = np.concatenate([c + rng.standard_normal((n, 3)) for c, n in zip(centres, sizes)]).astype(np.float32)
    codes = np.repeat(np.arange(3), sizes).astype(np.int64)
    return X, codes, {1: 480, 2: 520}


class Rebuilding:
    """A source that builds a fresh index for every query (what the resamplers did before sharing)."""

    def __init__(self, config=None):
        from selectkit_plugins.smote.core import LayerNeighbors

        self.layer = LayerNeighbors(config)

    def fit(self, base, self_join=False):
        return lambda k, rows=None: self.layer(base, k, rows)


# builds: one index over all points (when the method needs neighbours over every class) + one per class
@pytest.mark.parametrize("method, shared, per_class", [("smote", 0, 1), ("borderline-1", 1, 1), ("borderline-2", 1, 0), ("adasyn", 1, 1)])
def test_resamplers_build_each_distinct_base_once(method, shared, per_class):
    from selectkit_plugins.smote.core import LayerNeighbors, draw

    X, codes, plan = three_classes()
    before = build_count()
    drawn = draw(method, X, codes, plan, np.random.default_rng(0), LayerNeighbors(), k=5, m=10)
    builds = build_count() - before
    if method.startswith("borderline"):
        assert all(drawn.meta["danger"][c] > 0 for c in plan), "the data must put every class in danger"
    assert builds == shared + per_class * len(plan)
    before = build_count()
    again = draw(method, X, codes, plan, np.random.default_rng(0), Rebuilding(), k=5, m=10)
    assert build_count() - before > builds or shared == 0, "the rebuilding source builds once per query"
    assert np.array_equal(drawn.parents, again.parents) and np.array_equal(drawn.lam, again.lam)


def test_resamplers_report_each_index_and_its_exact_fallback():
    from selectkit_plugins.smote.core import LayerNeighbors, draw

    X, codes, plan = three_classes()
    config = NeighborConfig(backend="ivf", exact_below=150)  # 150 * sqrt(64 / 3) = 693 points: all 800 IVF, each class exact
    drawn = draw("adasyn", X, codes, plan, np.random.default_rng(0), LayerNeighbors(config), k=5)
    keys = ("base", "n", "backend", "exact_fallback")
    assert [{key: entry[key] for key in keys} for entry in drawn.meta["neighbors"]] == [
        {"base": "all", "n": 800, "backend": "ivf", "exact_fallback": False},
        {"base": 1, "n": 120, "backend": "flat", "exact_fallback": True},
        {"base": 2, "n": 80, "backend": "flat", "exact_fallback": True},
    ]
