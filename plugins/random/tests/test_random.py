"""Static random subset: contract, size, stability across epochs, class balance."""

import numpy as np

from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector
from selectkit_plugins.random import RandomSubset


def test_contract():
    check_selector(
        lambda **kw: RandomSubset(**{"fraction": 0.3, **kw}),
        bad_params={"fraction": [0, 2, "x"], "class_balanced": ["no"]},
        stochastic=True,
    )


def test_static_across_epochs_and_sized():
    pool = Pool(np.arange(300), labels=np.arange(300) % 3)
    subsets = [RandomSubset(fraction=0.1).select(pool, SelectContext(seed=2, epoch=e)).indices for e in range(4)]
    assert all(np.array_equal(subsets[0], s) for s in subsets)
    assert subsets[0].size == 30 and np.unique(subsets[0]).size == 30


def test_class_balanced():
    labels = np.array([0] * 270 + [1] * 30)
    idx = RandomSubset(fraction=0.2, class_balanced=True).select(Pool(np.arange(300), labels=labels), SelectContext(seed=0)).indices
    assert np.bincount(labels[idx]).tolist() == [30, 30]


def test_random_acquisition_contract():
    from selectkit.testing import make_pool

    check_selector(
        lambda **kw: RandomSubset(**{"budget": 12, **kw}),
        pool_factory=lambda: make_pool(n=120, labelled=30),
        bad_params={"budget": [0, -1, 2.5, "x", 10_000], "class_balanced": [True]},
        stochastic=True,
    )


def test_random_acquisition_is_uniform_over_the_unlabelled_pool():
    from scipy.stats import chisquare

    from selectkit.selection import Acquisition

    pool = Pool(np.arange(100, 120), labelled=Pool(np.arange(100)))
    counts = np.zeros(20, dtype=np.int64)
    for seed in range(1000):
        out = RandomSubset(budget=5).select(pool, SelectContext(seed=seed, round=1))
        assert isinstance(out, Acquisition) and len(out) == 5 and np.unique(out.indices).size == 5
        counts[out.indices] += 1
    assert chisquare(counts).pvalue > 1e-3
    a, b = (RandomSubset(budget=5).select(pool, SelectContext(seed=0, round=r)).indices for r in (1, 2))
    assert not np.array_equal(a, b), "each round draws afresh"


def test_random_acquisition_budget_and_balance_errors():
    import pytest

    from selectkit.errors import ConfigError

    sel = RandomSubset(budget=21)
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.budget is 21, larger than the 20 unlabelled items"):
        sel.select(Pool(20), SelectContext(seed=0))
    with pytest.raises(ConfigError, match=r"class_balanced must be false when budget is set"):
        RandomSubset(budget=3, class_balanced=True).select(Pool(20, labels=np.arange(20) % 2), SelectContext(seed=0))


def test_yaml_is_typed_by_its_schema():
    from pathlib import Path

    from selectkit.schema import check_selector_config

    sel = check_selector_config("random", Path(__file__).resolve().parents[1] / "conf" / "selector" / "random.yaml")
    assert sel.budget is None and sel.returns.__name__ == "Selection"
