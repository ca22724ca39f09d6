"""Margin, entropy and BALD: the shared contract, invariants on a round pool, scores against numpy
references, the stochastic parameter, and the MC-dropout errors (zero passes, a model without dropout)."""

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.schema import check_selector_config
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector
from selectkit_plugins.acquisition import BALD, Entropy, LeastConfidence, Margin

SCORED = {"least_confidence": LeastConfidence, "margin": Margin, "entropy": Entropy, "bald": BALD}
BAD = {"budget": [0, -3, 2.5, "x", None, True, 10_000], "stochastic": ["top", 1, ""], "temperature": [0, -1.0, "warm", None]}


@pytest.mark.parametrize("name", ["least_confidence", "margin", "entropy", "bald"])
@pytest.mark.parametrize("stochastic", [None, "power"])
def test_contract(name, stochastic):
    cls = SCORED[name]
    bad = dict(BAD, **({"passes": [0, -1, 1.5, "x"]} if name == "bald" else {}))
    check_selector(lambda **kw: cls(**{"budget": 12, "stochastic": stochastic, **({"passes": 4} if name == "bald" else {}), **kw}), bad_params=bad, stochastic=stochastic is not None or None)


@pytest.mark.parametrize("name", sorted(SCORED))
def test_yaml_is_typed_by_its_schema(name, kit):
    sel = check_selector_config(name, kit.CONF / f"{name}.yaml")
    assert isinstance(sel, SCORED[name]) and sel.budget == 10 and sel.stochastic is None and sel.temperature == 1.0


@pytest.mark.parametrize("name", sorted(SCORED))
@pytest.mark.parametrize("stochastic", [None, "power", "softmax", "softrank"])
def test_invariants_on_a_round_pool(name, stochastic, kit):
    pool = kit.round_pool()
    extra = {"passes": 5} if name == "bald" else {}
    out = kit.select(SCORED[name](budget=30, stochastic=stochastic, **extra), pool)
    kit.assert_invariants(pool, out, 30)
    again = kit.select(SCORED[name](budget=30, stochastic=stochastic, **extra), kit.round_pool())
    assert np.array_equal(out.indices, again.indices), "the same seed and round acquire the same"


def _entropy(p):
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)


def test_scores_match_numpy_references():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5) * 0.7, size=300)
    pool = Pool(300, probs=probs.astype(np.float32))
    srt = np.sort(probs, axis=1)
    refs = {"least_confidence": 1 - srt[:, -1], "margin": 1 - (srt[:, -1] - srt[:, -2]), "entropy": _entropy(probs)}
    for name, ref in refs.items():
        out = SCORED[name](budget=40).select(pool, SelectContext(seed=0))
        np.testing.assert_allclose(out.scores, ref[out.indices], rtol=1e-5, atol=1e-6)
        assert set(out.indices.tolist()) == set(np.argsort(-ref, kind="stable")[:40].tolist()), name
        assert np.all(np.diff(out.scores) <= 0)


def test_bald_is_the_mutual_information_of_the_mc_passes():
    rng = np.random.default_rng(5)
    mc = rng.dirichlet(np.ones(4), size=(200, 7)).astype(np.float32)
    pool = Pool(200, providers={"mc_probs": lambda ids, passes: mc[ids, :passes]})
    out = BALD(budget=25, passes=7).select(pool, SelectContext(seed=0))
    ref = _entropy(mc.mean(axis=1).astype(np.float64)) - _entropy(mc.astype(np.float64)).mean(axis=1)
    np.testing.assert_allclose(out.scores, ref[out.indices], rtol=1e-5, atol=1e-6)
    assert set(out.indices.tolist()) == set(np.argsort(-ref)[:25].tolist())
    # every pass the same prediction: no disagreement, a score of 0 everywhere
    same = np.repeat(mc[:, :1], 7, axis=1)
    flat = BALD(budget=5, passes=7).select(Pool(200, providers={"mc_probs": lambda ids, passes: same[ids]}), SelectContext(seed=0))
    assert np.allclose(flat.scores, 0.0, atol=1e-6)


def test_bald_asks_for_its_passes_from_the_real_provider(kit):
    pool = kit.round_pool(n=60, labelled=10)
    BALD(budget=5, passes=3).select(pool, SelectContext(seed=0))
    assert pool.get("mc_probs", passes=3).shape == (60, 3, 3)


def test_zero_passes_names_the_setting():
    sel = BALD(budget=5, passes=0)
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.passes must be an integer in \[1, inf\], got 0$"):
        sel.select(Pool(20, mc_probs=np.full((20, 2, 3), 1 / 3, np.float32)), SelectContext(seed=0))


def test_a_model_without_dropout_is_refused_for_mc_dropout():
    from selectkit.data import ArrayDataset
    from selectkit.models import MLP, ModelAdapter
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.tasks import Classification

    x = torch.randn(30, 4)
    dataset = ArrayDataset(x, torch.zeros(30, dtype=torch.long))
    task = Classification()
    task.setup({"num_classes": 3, "input_shape": (4,)})
    model = MLP(in_features=4, hidden=[8], num_classes=3, dropout=0.0)
    providers = model_providers(PoolScorer(ModelAdapter(model, num_classes=3), dataset, batch_size=16), task)
    with pytest.raises(ConfigError, match=r"^model: MLP has no dropout layer") as err:
        BALD(budget=3, passes=4).select(Pool(30, providers=providers), SelectContext(seed=0))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [0, 0.0, -0.5])
def test_temperature_at_or_below_zero_names_the_setting(value):
    sel = Entropy(budget=3, stochastic="power", temperature=value)
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.temperature must be a number in \(0, inf\], got"):
        sel.select(Pool(10, probs=np.full((10, 2), 0.5, np.float32)), SelectContext(seed=0))


def test_budget_larger_than_the_pool_names_the_setting():
    sel = Margin(budget=11)
    sel.config_path = "rounds.acquire"
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.budget is 11, larger than the 10 unlabelled items"):
        sel.select(Pool(10, probs=np.full((10, 2), 0.5, np.float32)), SelectContext(seed=0))


def test_stochastic_acquisition_depends_on_the_seed_and_follows_the_scores():
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=400).astype(np.float32)
    pool = Pool(400, probs=probs)
    draws = [Entropy(budget=40, stochastic="power", temperature=0.25).select(pool, SelectContext(seed=s)).indices for s in range(6)]
    assert len({tuple(np.sort(d)) for d in draws}) == 6, "a sample per seed"
    top = set(Entropy(budget=40).select(pool, SelectContext(seed=0)).indices.tolist())
    assert all(set(d.tolist()) != top for d in draws), "sampling, not the top-k"
    ent = _entropy(probs.astype(np.float64))
    sampled_mean = np.mean([ent[d].mean() for d in draws])
    assert sampled_mean > ent.mean() + 0.5 * ent.std(), "power sampling at T=0.25 prefers high scores"
