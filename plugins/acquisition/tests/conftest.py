"""Shared by the acquisition tests (as fixtures): round-loop pools with real model outputs
(`selectkit.testing.make_pool` with a labelled set), pools of given arrays for reference checks, and
the invariants every acquisition keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selectkit.selection import Acquisition
from selectkit.selector import Pool, SelectContext
from selectkit.testing import make_pool

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector"


def round_pool(n: int = 160, labelled: int = 40, seed: int = 0) -> Pool:
    """A round loop's acquisition pool: ``n`` unlabelled items, ``labelled`` already labelled ones."""
    return make_pool(n=n, labelled=labelled, seed=seed)


def assert_invariants(pool: Pool, out: Acquisition, budget: int) -> np.ndarray:
    """Exactly ``budget`` distinct pool items, none of them labelled; returns their global ids."""
    assert isinstance(out, Acquisition)
    assert len(out) == budget
    assert np.unique(out.indices).size == budget, "no duplicates"
    assert out.indices.min() >= 0 and out.indices.max() < len(pool), "within the unlabelled pool"
    ids = pool.ids[out.indices]
    assert np.intersect1d(ids, pool.labelled.ids).size == 0, "never an already labelled id"
    return ids


def select(selector, pool: Pool, seed: int = 0, round: int = 1) -> Acquisition:
    """``selector.select`` at (seed, round)."""
    return selector.select(pool, SelectContext(seed=seed, round=round))


def arrays_pool(n: int, labelled: dict | None = None, **arrays: np.ndarray) -> Pool:
    """A pool of ``n`` items with the given arrays (and a labelled set with its own arrays)."""
    ref = None
    if labelled:
        m = next(iter(labelled.values())).shape[0]
        ref = Pool(np.arange(n, n + m, dtype=np.int64), **labelled)
    return Pool(np.arange(n, dtype=np.int64), labelled=ref, **arrays)


class Kit:
    """The helpers above, handed to tests by the ``kit`` fixture."""

    CONF = CONF
    round_pool = staticmethod(round_pool)
    assert_invariants = staticmethod(assert_invariants)
    select = staticmethod(select)
    arrays_pool = staticmethod(arrays_pool)


@pytest.fixture
def kit() -> Kit:
    """The acquisition tests' helpers."""
    return Kit()
