"""The shared selector test kit, registry discovery, and the YAML configs."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from selectkit import registry
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector
from selectkit_plugins.smote import (
    ADASYNSelector,
    BorderlineSMOTESelector,
    RandomOverSelector,
    RandomUnderSelector,
    SMOTESelector,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector"
OVER = [SMOTESelector, BorderlineSMOTESelector, ADASYNSelector]


def overlapping_pool():
    """An imbalanced pool (150 / 60 / 24) whose classes overlap, so every method has work to do."""
    rng = np.random.default_rng(11)
    y = rng.permutation(np.repeat(np.arange(3), [150, 60, 24])).astype(np.int64)
    X = (rng.normal(scale=0.8, size=(3, 8))[y] + rng.normal(size=(y.size, 8))).astype(np.float32)
    return Pool(np.arange(y.size, dtype=np.int64), labels=y, features=X, embeddings=X[:, :4].copy())


COMMON_BAD = {"sampling_strategy": ["bogus", 0.0, 1.5, {99: 5}, {1: 10}, None, True]}
NEIGHBOUR_BAD = {
    "k_neighbors": [0, -1, "x", 2.5, None, 30], "neighbors": ["flat", 3], "space": ["pixels", None], "gather_below": [-1, 2.5, "x", None],
}


@pytest.mark.parametrize("cls", OVER)
@pytest.mark.parametrize("space", ["input", "embedding"])
@pytest.mark.parametrize("gather_below", [50_000, 0])
def test_over_samplers_pass_the_kit(cls, space, gather_below):
    bad = {**COMMON_BAD, **NEIGHBOUR_BAD}
    if cls is BorderlineSMOTESelector:
        bad = {**bad, "m_neighbors": [0, "ten", 1000], "kind": ["borderline-3", None]}
    check_selector(lambda **kw: cls(**{"space": space, "gather_below": gather_below, **kw}), overlapping_pool, bad_params=bad, stochastic=True)


@pytest.mark.parametrize("cls", [RandomOverSelector, RandomUnderSelector])
def test_random_samplers_pass_the_kit(cls):
    check_selector(lambda **kw: cls(**kw), overlapping_pool, bad_params=COMMON_BAD if cls is RandomOverSelector else {"sampling_strategy": ["bogus", {0: 500}, None]}, stochastic=True)


def test_requirements_follow_space():
    assert SMOTESelector().requires == {"labels", "features"}
    assert SMOTESelector(space="embedding").requires == {"labels", "embeddings"}
    assert RandomUnderSelector().requires == {"labels"} and not RandomUnderSelector.creates_samples
    sel = SMOTESelector(space="embedding").select(overlapping_pool(), SelectContext(seed=0))
    assert sel.synthetic.space == "embedding" and sel.synthetic.features.shape[1] == 4


def test_image_shaped_features_keep_their_shape():
    pool = overlapping_pool()
    images = pool.features.reshape(-1, 2, 2, 2)
    sel = SMOTESelector().select(Pool(pool.ids, labels=pool.labels, features=images), SelectContext(seed=0))
    assert sel.synthetic.features.shape[1:] == (2, 2, 2)


@pytest.mark.parametrize("name", ["smote", "borderline_smote", "adasyn", "random_over", "random_under"])
def test_configs_build_working_selectors(name):
    from selectkit.schema import check_selector_config

    path = CONF / f"{name}.yaml"
    text = path.read_text()
    spec = {k: v for k, v in yaml.safe_load(text).items() if k != "defaults"}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "defaults", "-")):
            assert "#" in line, f"{path.name}: every field needs a comment: {line!r}"
    assert check_selector_config(name, path).name == name, "the YAML composes with the selector's schema"
    spec.setdefault("schedule", registry.get(name).default_schedule)
    params = {k: v for k, v in spec.items() if k not in ("name", "schedule", "every")}
    selector = registry.create(name, config_path="selector", **params)
    selector.check_params()
    selection = selector.select(overlapping_pool(), SelectContext(seed=0))
    if selector.creates_samples:
        assert spec["schedule"] == "once"
        assert selection.num_synthetic > 0
