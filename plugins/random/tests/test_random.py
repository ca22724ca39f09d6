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
