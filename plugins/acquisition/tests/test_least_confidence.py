"""Least confidence: the shared selector contract, the least confident items against a numpy
reference, ties broken by the seed, budgets, and its YAML typed by its schema."""

from pathlib import Path

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.schema import check_selector_config
from selectkit.selection import Acquisition
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.acquisition import LeastConfidence

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector" / "least_confidence.yaml"


def test_contract():
    check_selector(
        lambda **kw: LeastConfidence(**{"budget": 12, **kw}),
        bad_params={"budget": [0, -3, 2.5, "x", None, True, 10_000]},
    )


def test_picks_the_least_confident_items():
    pool = make_pool(n=240, seed=4)
    probs = pool.get("probs")
    out = LeastConfidence(budget=25).select(pool, SelectContext(seed=0, round=2))
    assert isinstance(out, Acquisition) and len(out) == 25
    reference = 1.0 - probs.max(axis=1)
    expected = np.argsort(-reference, kind="stable")[:25]
    assert set(out.indices.tolist()) == set(expected.tolist())
    np.testing.assert_allclose(out.scores, reference[out.indices], rtol=1e-6)
    assert np.all(np.diff(out.scores) <= 0), "best first"
    rest = np.setdiff1d(np.arange(240), out.indices)
    assert reference[rest].max() <= out.scores.min() + 1e-7


def _flat_pool(n=50, classes=4):
    probs = np.full((n, classes), 1.0 / classes, dtype=np.float32)
    return Pool(n, probs=probs)


def test_ties_broken_by_the_seed_and_round():
    draw = lambda seed, rnd: LeastConfidence(budget=10).select(_flat_pool(), SelectContext(seed=seed, round=rnd)).indices
    assert np.array_equal(draw(0, 1), draw(0, 1))
    assert not np.array_equal(draw(0, 1), draw(1, 1))
    assert not np.array_equal(draw(0, 1), draw(0, 2))
    assert not np.array_equal(np.sort(draw(0, 1)), np.arange(10)), "ties must not fall back to pool order"


def test_budget_larger_than_the_pool_names_the_setting():
    sel = LeastConfidence(budget=51)
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.budget is 51, larger than the 50 unlabelled"):
        sel.select(_flat_pool(), SelectContext(seed=0))
    assert len(LeastConfidence(budget=50).select(_flat_pool(), SelectContext(seed=0))) == 50


def test_pool_without_probabilities_is_refused():
    with pytest.raises(ConfigError, match="probs"):
        LeastConfidence().select(Pool(20, features=np.zeros((20, 3), np.float32)), SelectContext(seed=0))


def test_yaml_is_typed_by_its_schema():
    sel = check_selector_config("least_confidence", CONF)
    assert isinstance(sel, LeastConfidence) and sel.budget == 10
