"""RS2: contract, subset size, no repeats, coverage per cycle, determinism, class balance."""

import math

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.rs2 import RS2


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("balanced", [False, True])
def test_contract(replacement, balanced):
    check_selector(
        lambda **kw: RS2(**{"fraction": 0.2, "replacement": replacement, "class_balanced": balanced, **kw}),
        bad_params={"fraction": [0, 0.0, 1.5, -0.1, "abc", None, True], "replacement": ["yes", 1], "class_balanced": [None]},
        stochastic=True,
    )


def _pool(n):
    return Pool(np.arange(n, dtype=np.int64), labels=np.arange(n) % 4)


@pytest.mark.parametrize("n,fraction", [(100, 0.1), (101, 0.1), (10, 0.15), (997, 0.3), (50, 1.0), (7, 0.5)])
def test_without_replacement_covers_pool_every_cycle(n, fraction):
    rs2 = RS2(fraction=fraction)
    m = math.ceil(fraction * n - 1e-9)
    per_cycle = math.ceil(1 / fraction - 1e-9)
    for cycle in range(3):
        seen = []
        for epoch in range(cycle * math.ceil(n / m), (cycle + 1) * math.ceil(n / m)):
            idx = rs2.select(_pool(n), SelectContext(seed=3, epoch=epoch)).indices
            assert idx.size == m
            assert np.unique(idx).size == m, "no item twice within an epoch"
            seen.append(idx)
        assert math.ceil(n / m) <= per_cycle
        assert np.array_equal(np.unique(np.concatenate(seen)), np.arange(n)), "every item seen once per cycle"


def test_with_replacement_size_and_range():
    idx = RS2(fraction=0.5, replacement=True).select(_pool(40), SelectContext(seed=0)).indices
    assert idx.size == 20 and idx.min() >= 0 and idx.max() < 40


def test_same_seed_same_sequence_other_seed_other_sequence():
    a = [RS2(fraction=0.1).select(_pool(500), SelectContext(seed=7, epoch=e)).indices for e in range(12)]
    b = [RS2(fraction=0.1).select(_pool(500), SelectContext(seed=7, epoch=e)).indices for e in reversed(range(12))][::-1]
    c = [RS2(fraction=0.1).select(_pool(500), SelectContext(seed=8, epoch=e)).indices for e in range(12)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "selection depends only on (seed, epoch), not call order"
    assert not all(np.array_equal(x, z) for x, z in zip(a, c))
    assert not np.array_equal(a[0], a[1])


def test_stage_changes_stream():
    a = RS2(fraction=0.1).select(_pool(500), SelectContext(seed=7, stage=0)).indices
    b = RS2(fraction=0.1).select(_pool(500), SelectContext(seed=7, stage=1)).indices
    assert not np.array_equal(a, b)


def test_class_balanced_quotas():
    labels = np.array([0] * 900 + [1] * 80 + [2] * 20)
    pool = Pool(np.arange(1000), labels=labels)
    idx = RS2(fraction=0.15, class_balanced=True).select(pool, SelectContext(seed=0)).indices
    counts = np.bincount(labels[idx], minlength=3)
    assert idx.size == 150 and np.unique(idx).size == 150
    assert counts[2] == 20, "a small class gives everything it has"
    assert abs(int(counts[0]) - int(counts[1])) <= 1, "the rest is split evenly"


def test_class_balanced_walk_covers_each_class():
    labels = np.array([0] * 60 + [1] * 30)
    pool = Pool(np.arange(90), labels=labels)
    rs2 = RS2(fraction=0.2, class_balanced=True)
    seen = np.concatenate([rs2.select(pool, SelectContext(seed=1, epoch=e)).indices for e in range(7)])
    assert set(seen[labels[seen] == 1]) == set(range(60, 90))


def test_fraction_error_names_setting():
    rs2 = RS2(fraction=1.5)
    rs2.config_path = "pipeline.stages.rs2"
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.rs2\.fraction must be a number in \(0, 1\]"):
        rs2.select(make_pool(), SelectContext(seed=0))
