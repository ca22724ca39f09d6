"""`check_selector_worlds`, the kit's world-size check for any selector, passes and fails when it should."""

from pathlib import Path

import numpy as np
import pytest

from selectkit.testing import check_selector_worlds


@pytest.fixture
def probes(monkeypatch):
    folder = str(Path(__file__).parent)
    monkeypatch.syspath_prepend(folder)
    monkeypatch.setenv("PYTHONPATH", folder)
    import world_probes

    return world_probes


@pytest.mark.ddp
def test_a_sharded_selector_and_a_built_in_pass(probes):
    from selectkit_plugins.acquisition import Margin

    rng = np.random.default_rng(0)
    losses = rng.exponential(size=80).astype(np.float32)
    out = check_selector_worlds(probes.TopLoss, {"budget": 7}, {"losses": losses}, worlds=(3,))
    assert np.array_equal(out["indices"], np.sort(np.argsort(-losses)[:7]))
    probs = rng.dirichlet(np.ones(3), size=80).astype(np.float32)
    check_selector_worlds(Margin, {"budget": 6, "stochastic": "softrank"}, {"probs": probs}, worlds=(2,), labelled=range(10))


@pytest.mark.ddp
def test_a_selector_whose_draws_follow_the_shards_fails(probes):
    losses = np.zeros(80, dtype=np.float32)
    with pytest.raises(AssertionError, match="world 2, rank 0: indices differs from world 1's"):
        check_selector_worlds(probes.LocalDraws, {"budget": 7}, {"losses": losses}, worlds=(2,))
