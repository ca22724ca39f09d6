"""Full data: the whole pool, every epoch."""

import numpy as np

from selectkit.testing import check_selector, make_pool
from selectkit.selector import SelectContext
from selectkit_plugins.full import Full


def test_contract():
    check_selector(Full)


def test_everything_once():
    pool = make_pool(n=57)
    assert np.array_equal(Full().select(pool, SelectContext(seed=0, epoch=3)).indices, np.arange(57))
