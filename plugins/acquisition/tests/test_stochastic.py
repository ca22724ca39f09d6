"""Stochastic batch acquisition: first-pick frequencies against p ~ score^beta (power), exp(beta s)
(softmax) and rank^-beta (softrank) by chi-square tests that reject a wrong exponent, draws without
replacement, the parameter form and the stage form, and bad settings."""

import itertools

import numpy as np
import pytest
from scipy.stats import chisquare

from selectkit.errors import ConfigError
from selectkit.schema import check_selector_config
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector
from selectkit_plugins.acquisition import Entropy, StochasticAcquisition

SCORES = np.array([0.05, 0.3, 0.6, 1.0, 1.5, 2.2])
DRAWS = 6000


def _first_picks(selector_of, pool, draws=DRAWS):
    counts = np.zeros(len(pool), dtype=np.int64)
    for s in range(draws):
        counts[selector_of().select(pool, SelectContext(seed=s, round=1)).indices[0]] += 1
    return counts


def _expected(kind, temperature, scores):
    beta = 1.0 / temperature
    if kind == "power":
        w = scores**beta
    elif kind == "softmax":
        w = np.exp(beta * scores)
    else:
        ranks = np.empty(scores.size)
        ranks[np.argsort(-scores)] = np.arange(1, scores.size + 1)
        w = ranks**-beta
    return w / w.sum()


@pytest.mark.parametrize("kind, temperature", [("power", 0.5), ("power", 2.0), ("softmax", 0.7), ("softrank", 0.5)])
def test_first_pick_follows_the_sampling_distribution(kind, temperature):
    pool = Pool(SCORES.size, losses=SCORES)
    counts = _first_picks(lambda: StochasticAcquisition(budget=1, kind=kind, temperature=temperature), pool)
    p = _expected(kind, temperature, SCORES)
    assert chisquare(counts, DRAWS * p).pvalue > 1e-3
    # the same counts refute a sampler with another temperature: the test has power
    wrong = _expected(kind, temperature * 2.5, SCORES)
    assert chisquare(counts, DRAWS * wrong).pvalue < 1e-6


def test_power_sampling_through_the_parameter_of_a_scored_acquisition():
    # two-class probabilities whose entropies are spread out
    q = np.array([0.02, 0.06, 0.12, 0.2, 0.32, 0.5])
    probs = np.stack([q, 1 - q], axis=1).astype(np.float32)
    ent = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    pool = Pool(q.size, probs=probs)
    counts = _first_picks(lambda: Entropy(budget=1, stochastic="power", temperature=0.5), pool, draws=4000)
    assert chisquare(counts, 4000 * _expected("power", 0.5, ent)).pvalue > 1e-3
    assert chisquare(counts, 4000 * _expected("power", 1.0, ent)).pvalue < 1e-6


def test_draws_are_without_replacement():
    pool = Pool(SCORES.size, losses=SCORES)
    p = _expected("power", 1.0, SCORES)
    pairs = {}
    for s in range(DRAWS):
        got = StochasticAcquisition(budget=2, kind="power").select(pool, SelectContext(seed=s)).indices
        assert got.size == 2 and got[0] != got[1]
        key = tuple(sorted(got.tolist()))
        pairs[key] = pairs.get(key, 0) + 1
    combos = list(itertools.combinations(range(SCORES.size), 2))
    # two successive draws without replacement: P{i, j} = p_i p_j (1 / (1 - p_i) + 1 / (1 - p_j))
    expected = np.array([p[i] * p[j] * (1 / (1 - p[i]) + 1 / (1 - p[j])) for i, j in combos])
    observed = np.array([pairs.get(c, 0) for c in combos])
    assert chisquare(observed, DRAWS * expected / expected.sum()).pvalue > 1e-3


def test_zero_scores_come_last_under_power():
    scores = np.array([0.0, 0.0, 0.5, 0.0, 1.0, 0.2])
    for s in range(50):
        got = StochasticAcquisition(budget=4, kind="power").select(Pool(6, losses=scores), SelectContext(seed=s)).indices
        assert {2, 4, 5} <= set(got.tolist())


def test_listed_best_first_and_seeded():
    pool = Pool(200, losses=np.random.default_rng(1).random(200))
    a = StochasticAcquisition(budget=20).select(pool, SelectContext(seed=3, round=2))
    b = StochasticAcquisition(budget=20).select(pool, SelectContext(seed=3, round=2))
    c = StochasticAcquisition(budget=20).select(pool, SelectContext(seed=3, round=3))
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert np.all(np.diff(a.scores) <= 0)
    assert a.meta["stochastic"] == "power" and a.meta["temperature"] == 1.0


def test_stage_contract():
    check_selector(
        lambda **kw: StochasticAcquisition(**{"budget": 12, **kw}),
        bad_params={"budget": [0, 2.5, None, 10_000], "kind": ["top", None], "temperature": [0, -2, "x"], "score": ["", 3, None]},
        stochastic=True,
    )


def test_stage_yaml_is_typed_by_its_schema(kit):
    sel = check_selector_config("stochastic", kit.CONF / "stochastic.yaml")
    assert isinstance(sel, StochasticAcquisition) and (sel.score, sel.kind, sel.temperature) == ("losses", "power", 1.0)


def test_negative_scores_are_refused_by_power_but_not_softmax():
    pool = Pool(5, losses=np.array([-1.0, 0.5, 2.0, 0.1, 0.3]))
    sel = StochasticAcquisition(budget=2, kind="power")
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.kind is power, which needs non-negative scores; the lowest is -1"):
        sel.select(pool, SelectContext(seed=0))
    assert len(StochasticAcquisition(budget=2, kind="softmax").select(pool, SelectContext(seed=0))) == 2


def test_a_score_that_is_not_one_value_per_item_names_the_setting():
    sel = StochasticAcquisition(budget=2, score="probs")
    with pytest.raises(ConfigError, match=r"^selector\.score names 'probs', which gives shape \(6, 2\)"):
        sel.select(Pool(6, probs=np.full((6, 2), 0.5, np.float32)), SelectContext(seed=0))
    with pytest.raises(ConfigError, match="sensitivity"):
        StochasticAcquisition(budget=2, score="sensitivity").select(Pool(6, losses=np.ones(6)), SelectContext(seed=0))
