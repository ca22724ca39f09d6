"""Each acquisition as the round loop's acquisition stage on digits: real Lightning training, the
labelled set offered as ``pool.labelled``, queries distinct, never labelled before, exactly the budget."""

import json
import os

import numpy as np
import pytest

from selectkit.testing import compose_train_config
from selectkit.train import run

os.environ.setdefault("WANDB_MODE", "disabled")

ACQUIRE = {
    "random": [],
    "margin": [],
    "entropy_power": ["rounds.acquire.name=entropy", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=0.5"],
    "bald": ["+rounds.acquire.passes=4"],
    "kcenter": [],
    "badge": [],
    "typiclust": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ACQUIRE))
def test_two_rounds_on_digits(name, tmp_path):
    extra = ACQUIRE[name] or [f"rounds.acquire.name={name}"]
    if name == "bald":
        extra = ["rounds.acquire.name=bald", *extra]
    cfg = compose_train_config(tmp_path, "rounds=default", "selector=full", "trainer.max_epochs=1", "rounds.initial.size=30", "rounds.budget=15", "rounds.num_rounds=2", *extra)
    summary = run(cfg, tmp_path / "run")
    assert summary["labels_used"] == 30 + 2 * 15
    seen = set()
    first = json.loads((tmp_path / "run" / "rounds" / "round_000.json").read_text())
    for r in range(2):
        q = np.load(tmp_path / "run" / "rounds" / f"round_{r:03d}.npz")["ids"]
        assert q.size == 15 and np.unique(q).size == 15
        assert not seen & set(q.tolist()), "an item is queried once"
        seen |= set(q.tolist())
    assert first["labelled"] == 30
    if name in ("kcenter", "typiclust"):
        later = json.loads((tmp_path / "run" / "rounds" / "round_001.json").read_text())
        assert (first["meta"]["acquire"]["labelled"], later["meta"]["acquire"]["labelled"]) == (30, 45), "the labelled set is offered as pool.labelled"


def test_losses_of_unlabelled_items_are_refused_in_a_round_loop(tmp_path):
    from selectkit.errors import ConfigError

    cfg = compose_train_config(tmp_path, "rounds=default", "selector=full", "trainer.max_epochs=1", "rounds.initial.size=30", "rounds.budget=15", "rounds.num_rounds=1", "rounds.acquire.name=stochastic")
    with pytest.raises(ConfigError, match=r"^losses: \d+ of the \d+ items asked for are unlabelled; losses would read labels no oracle has revealed") as err:
        run(cfg, tmp_path / "run")
    assert "\n" not in str(err.value)
