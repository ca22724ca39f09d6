"""Registers the SMOTE family's selectors at run time when no entry point provides them yet, and
offers the small imbalanced data sets the tests share."""

import numpy as np
import pytest

from selectkit import registry
from selectkit_plugins.smote import (
    ADASYNSelector,
    BorderlineSMOTESelector,
    RandomOverSelector,
    RandomUnderSelector,
    SMOTESelector,
)

SELECTORS = [SMOTESelector, BorderlineSMOTESelector, ADASYNSelector, RandomOverSelector, RandomUnderSelector]

for _cls in SELECTORS:
    if _cls.name not in registry.entries():
        registry.register()(_cls)


def overlapping(sizes=(300, 90, 40), d=6, spread=1.0, seed=0):
    """Gaussian classes whose centres sit close enough that they overlap (borderline points exist)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    centres = rng.normal(scale=spread, size=(len(sizes), d))
    X = (centres[y] + rng.normal(size=(y.size, d))).astype(np.float32)
    perm = rng.permutation(y.size)
    return X[perm], y[perm]


@pytest.fixture
def data3():
    """Three overlapping classes of 300, 90 and 40 samples, d=6, float32."""
    return overlapping()


@pytest.fixture
def data2():
    """Two overlapping classes of 400 and 60 samples, d=5, float32."""
    return overlapping(sizes=(400, 60), d=5, seed=1)


@pytest.fixture
def make_data():
    """The `overlapping` generator, for tests that need their own sizes."""
    return overlapping
