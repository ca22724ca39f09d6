"""Round loops (active learning) on digits: the loop end to end, determinism, resume after a round,
the simulated oracle and its checks, and bad settings refused before anything is written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.oracles import Simulated, check_answer
from selectkit.train import run

ROUNDS = ["rounds=default", "selector=full", "trainer.max_epochs=1", "rounds.initial.size=30", "rounds.budget=15"]


def _run(compose_cfg, out, *overrides):
    cfg = compose_cfg(*ROUNDS, *overrides)
    return cfg, run(cfg, out)


def _queries(out, rounds):
    return [np.load(out / "rounds" / f"round_{r:03d}.npz") for r in range(rounds)]


def test_loop_grows_the_labelled_set_by_the_budget(compose_cfg, tmp_path):
    out = tmp_path / "run"
    cfg, summary = _run(compose_cfg, out, "rounds.num_rounds=3")
    assert [h["labelled"] for h in summary["rounds"]] == [30, 45, 60, 75], "3 rounds of acquisition, then a training on all 75 labels"
    assert [h["queried"] for h in summary["rounds"]] == [15, 15, 15, 0]
    assert summary["labels_used"] == 75
    import torch

    state = torch.load(out / "checkpoints" / "rounds.pt", weights_only=True)
    final = state["labelled"].numpy()
    assert final.shape[0] == 75 and np.unique(final).shape[0] == 75
    seen = set(final.tolist())
    queried_all = []
    for r, q in enumerate(_queries(out, 3)):
        ids = q["ids"]
        assert ids.shape[0] == 15 and np.unique(ids).shape[0] == 15
        assert np.all(np.diff(q["scores"]) <= 1e-7), "best first"
        queried_all += ids.tolist()
        record = json.loads((out / "rounds" / f"round_{r:03d}.json").read_text())
        assert record["queried_ids"] == ids.tolist() and record["labels"] == q["labels"].tolist()
        assert 0.0 <= record["val_acc"] <= 1.0 and record["train_s"] >= 0 and record["select_s"] >= 0
    assert len(set(queried_all)) == 45, "no item is queried twice"
    initial = seen - set(queried_all)
    assert len(initial) == 30 and not initial & set(queried_all), "queried ids were never labelled before"
    from selectkit.data import Digits

    source = Digits(seed=0)
    source.setup()
    truth = source.train.labels()
    for q in _queries(out, 3):
        assert np.array_equal(q["labels"], truth[q["ids"]]), "the simulated oracle reveals the true labels"
    lines = (out / "rounds.jsonl").read_text().splitlines()
    assert [json.loads(l)["round"] for l in lines] == [0, 1, 2, 3]
    assert all("val_acc" in h for h in summary["rounds"])
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(x["round"], x["round_epoch"], x["epoch"], x["labelled"]) for x in rows] == [(0, 0, 0, 30), (1, 0, 1, 45), (2, 0, 2, 60), (3, 0, 3, 75)]
    assert [x["examples_seen"] for x in rows] == [30, 75, 135, 210], "examples seen add up over rounds"
    assert rows[-1]["train_s"] == pytest.approx(summary["train_s"], abs=1e-3)
    assert json.loads((out / "summary.json").read_text())["labels_used"] == 75


def test_the_final_model_trains_on_every_label_bought(compose_cfg, tmp_path):
    """Two rounds of acquisition, then a training on all 60 labels: ``labels_used``, the final metrics
    and the done line are that last model's (no label is bought after the last training)."""
    import torch

    from selectkit.train import closing_line

    out = tmp_path / "run"
    _, summary = _run(compose_cfg, out, "rounds.num_rounds=2")
    bought = torch.load(out / "checkpoints" / "rounds.pt", weights_only=True)["labelled"].numpy()
    assert bought.shape[0] == 30 + 2 * 15 == summary["labels_used"]
    final = summary["final"]
    assert final == summary["rounds"][-1] and final["labelled"] == 60 and final["queried"] == 0
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    before = [x for x in rows if x["round"] < final["round"]]
    assert rows[-1]["examples_seen"] - before[-1]["examples_seen"] == 60, "the final model's epoch went over every label bought"
    assert rows[-1]["val_acc"] == final["val_acc"]
    assert f"2 rounds of acquisition, 60 labels, final val_acc {final['val_acc']:.4f}" in closing_line(summary, out)


def _strict(text):
    """``json.loads`` that refuses the bare constants NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in a JSON file"))


def test_every_json_output_is_strict_json_scores_without_a_value_are_null(compose_cfg, tmp_path):
    """BADGE's picks have no scores (NaN in the .npz): the round file says null, and every JSON file the
    run writes parses with a strict parser."""
    out = tmp_path / "badge"
    _run(compose_cfg, out, "rounds.num_rounds=1", "rounds.acquire.name=badge")
    assert np.isnan(np.load(out / "rounds" / "round_000.npz")["scores"]).all()
    assert _strict((out / "rounds" / "round_000.json").read_text())["scores"] == [None] * 15
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json*") if ".hydra" not in p.parts)
    assert {"summary.json", "rounds.jsonl", "metrics.jsonl", "rounds/round_001.json", "selections/manifest.jsonl"} <= set(files)
    for name in files:
        text = (out / name).read_text()
        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            _strict(line)


def test_initial_set_is_class_balanced_or_per_class(compose_cfg, tmp_path):
    from selectkit.rounds import initial_ids

    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    ids = initial_ids({"initial": {"size": 40, "per_class": None, "class_balanced": True}}, labels, 0)
    assert np.bincount(labels[ids]).tolist() == [10, 10, 10, 10]
    ids = initial_ids({"initial": {"size": None, "per_class": 5, "class_balanced": False}}, labels, 0)
    assert np.bincount(labels[ids]).tolist() == [5, 5, 5, 5]
    a = initial_ids({"initial": {"size": 40, "per_class": None, "class_balanced": False}}, labels, 0)
    b = initial_ids({"initial": {"size": 40, "per_class": None, "class_balanced": False}}, labels, 1)
    assert a.shape[0] == 40 and not np.array_equal(a, b)


def test_same_seed_same_queries(compose_cfg, tmp_path):
    _run(compose_cfg, tmp_path / "a", "rounds.num_rounds=2")
    _run(compose_cfg, tmp_path / "b", "rounds.num_rounds=2")
    _run(compose_cfg, tmp_path / "c", "rounds.num_rounds=2", "seed=1")
    for qa, qb in zip(_queries(tmp_path / "a", 2), _queries(tmp_path / "b", 2)):
        assert np.array_equal(qa["ids"], qb["ids"]) and np.array_equal(qa["scores"], qb["scores"])
    assert not np.array_equal(_queries(tmp_path / "a", 1)[0]["ids"], _queries(tmp_path / "c", 1)[0]["ids"])


@pytest.mark.parametrize("warm", [False, True])
def test_resume_after_a_round_repeats_the_uninterrupted_queries(compose_cfg, tmp_path, warm):
    extra = [f"rounds.warm_start={str(warm).lower()}"]
    _, full = _run(compose_cfg, tmp_path / "full", "rounds.num_rounds=3", *extra)
    _run(compose_cfg, tmp_path / "cut", "rounds.num_rounds=1", *extra)
    state = tmp_path / "cut" / "checkpoints" / "rounds.pt"
    _, resumed = _run(compose_cfg, tmp_path / "cut", "rounds.num_rounds=3", f"resume={state}", *extra)
    for qa, qb in zip(_queries(tmp_path / "full", 3), _queries(tmp_path / "cut", 3)):
        assert np.array_equal(qa["ids"], qb["ids"]) and np.array_equal(qa["labels"], qb["labels"])
        np.testing.assert_array_equal(qa["scores"], qb["scores"])
    assert [h["val_acc"] for h in resumed["rounds"]] == [h["val_acc"] for h in full["rounds"]]
    assert resumed["labels_used"] == full["labels_used"]
    with pytest.raises(ConfigError, match=r"^rounds\.budget=16 differs"):
        _run(compose_cfg, tmp_path / "other", "rounds.num_rounds=3", f"resume={state}", "rounds.budget=16", *extra)


def test_round_epochs_rise_to_the_minimum_steps():
    from selectkit.rounds import round_epochs

    assert round_epochs({"epochs_per_round": 2, "min_steps": None}, 10, 256) == 2
    assert round_epochs({"epochs_per_round": 2, "min_steps": 10}, 10, 256) == 10, "one step an epoch"
    assert round_epochs({"epochs_per_round": 2, "min_steps": 10}, 1000, 256) == 3, "4 steps an epoch"
    assert round_epochs({"epochs_per_round": 2, "min_steps": 10}, 1000, 256, world=2) == 5, "2 steps an epoch per process"
    assert round_epochs({"epochs_per_round": 20, "min_steps": 10}, 1000, 256) == 20, "never fewer epochs"


def test_min_steps_trains_longer_and_rounds_report_the_final_model(compose_cfg, tmp_path):
    _, summary = _run(compose_cfg, tmp_path / "steps", "rounds.num_rounds=1", "data.batch_size=16", "rounds.min_steps=5")
    assert [h["epochs"] for h in summary["rounds"]] == [3, 2], "30 labels: 2 steps an epoch; 45: 3"
    rows = [json.loads(l) for l in (tmp_path / "steps" / "metrics.jsonl").read_text().splitlines()]
    assert [(x["round"], x["round_epoch"]) for x in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    # one configured epoch validated once: the raised rounds validate once too, at their last epoch
    assert [("val_loss" in x) for x in rows] == [False, False, True, False, True]
    # validating every 2nd of 3 epochs leaves the last unvalidated: the round validates its final model
    every = ["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=1"]
    _, each = _run(compose_cfg, tmp_path / "each", "rounds.num_rounds=1", *every)
    _, second = _run(compose_cfg, tmp_path / "second", "rounds.num_rounds=1", *every[:1], "trainer.check_val_every_n_epoch=2")
    assert second["rounds"][0]["val_loss"] == each["rounds"][0]["val_loss"]
    rows = [json.loads(l) for l in (tmp_path / "each" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["val_loss"] != rows[2]["val_loss"], "epochs 2 and 3 differ, so the check can fail"


@pytest.mark.parametrize(
    "overrides, setting",
    [
        (["rounds.budget=700"], r"^rounds\.budget=700 over 2 more rounds"),
        (["rounds.num_rounds=0"], r"^rounds\.num_rounds must be"),
        (["rounds.min_steps=0"], r"^rounds\.min_steps must be null or an integer >= 1"),
        (["rounds.initial.size=5000"], r"^rounds\.initial\.size=5000 is larger than the pool"),
        (["rounds.initial.per_class=4"], r"^rounds\.initial: set exactly one"),
        (["+rounds.acquire.budget=3"], r"^rounds\.acquire\.budget: the per-round budget is set in rounds\.budget"),
        (["rounds.acquire.name=full"], r"^rounds\.acquire\.name: full returns Selection"),
        (["rounds.acquire.name=nope"], r"^rounds\.acquire\.name: unknown selector"),
        (["selector=least_confidence"], r"^selector: the training pipeline must end in a Selection"),
    ],
)
def test_bad_settings_write_nothing(compose_cfg, tmp_path, overrides, setting):
    out = tmp_path / "bad"
    with pytest.raises(ConfigError, match=setting) as err:
        _run(compose_cfg, out, "rounds.num_rounds=2", *overrides)
    assert "\n" not in str(err.value)
    assert not (out / "summary.json").exists() and not (out / "rounds").exists()


def test_bad_budget_exits_2_from_the_command_line(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "selectkit.train", "experiment=active_digits", "rounds.budget=1000", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("selectkit-train: error: rounds.budget=1000")
    assert not (tmp_path / "run" / "summary.json").exists()


class _Source:
    class train:
        @staticmethod
        def labels():
            return np.array([3, 1, 4, 1, 5], dtype=np.int64)


def test_simulated_oracle_reveals_true_labels_and_refuses_unknown_ids():
    oracle = Simulated()
    oracle.setup(_Source)
    ids, labels = oracle.label(np.array([4, 0], dtype=np.int64))
    assert ids.tolist() == [4, 0] and labels.tolist() == [5, 3]
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: asked for 1 unknown ids"):
        oracle.label(np.array([1, 9], dtype=np.int64))


def test_answers_are_checked():
    asked = np.array([7, 2, 5], dtype=np.int64)
    assert check_answer(asked, (np.array([5, 7, 2]), np.array([0, 1, 2])), 3).tolist() == [1, 2, 0]
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: returned 2 labels for the 3 ids asked"):
        check_answer(asked, (np.array([7, 2]), np.array([1, 1])), 3)
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: answered 1 unknown ids"):
        check_answer(asked, (np.array([7, 2, 9]), np.array([1, 1, 1])), 3)
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: returned labels outside"):
        check_answer(asked, (asked, np.array([0, 1, 3])), 3)
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: label\(ids\) must return"):
        check_answer(asked, None, 3)


def test_budget_schedule_and_total_budget_trim_the_last_round_and_stop(compose_cfg, tmp_path):
    out = tmp_path / "sched"
    _, summary = _run(compose_cfg, out, "rounds.initial.size=10", "rounds.budget=[5,10,20,20,20]", "rounds.total_budget=40", "rounds.num_rounds=5")
    assert [h["labelled"] for h in summary["rounds"]] == [10, 15, 25, 40], "the round that finds the total spent trains and ends the loop"
    assert [h["queried"] for h in summary["rounds"]] == [5, 10, 15, 0], "the round that would pass the total is trimmed"
    assert summary["labels_used"] == 40 and summary["total_budget"] == 40
    assert [np.load(out / "rounds" / f"round_{r:03d}.npz")["ids"].shape[0] for r in range(4)] == [5, 10, 15, 0]
    assert not (out / "rounds" / "round_004.json").exists()
    lines = [json.loads(l) for l in (out / "rounds.jsonl").read_text().splitlines()]
    assert all({"labelled", "val_acc", "train_s", "select_s", "acquire_s"} <= set(l) for l in lines), "labels used, accuracy, selection and training time per round"


@pytest.mark.parametrize(
    "overrides, setting",
    [
        (["rounds.budget=[5,5]", "rounds.num_rounds=3"], r"^rounds\.budget lists 2 budgets for rounds\.num_rounds=3"),
        (["rounds.budget=[5,0]"], r"^rounds\.budget must be an integer >= 1 or a list"),
        (["rounds.total_budget=20"], r"^rounds\.total_budget=20 is smaller than rounds\.initial\.size=30"),
        (["rounds.budget=[10,2000]"], r"^rounds\.budget=\[10, 2000\] over 2 more rounds needs 2010 unlabelled items, the pool has \d+ "),
        (["+rounds.initial.select={name:least_confidence}"], r"^rounds\.initial\.class_balanced: a selector picks the initial set without labels"),
        (["+rounds.initial.select={name:least_confidence}", "rounds.initial.class_balanced=false", "rounds.initial.size=null", "rounds.initial.per_class=3"], r"^rounds\.initial\.select needs rounds\.initial\.size"),
        (["+rounds.initial.select={name:full}", "rounds.initial.class_balanced=false"], r"^rounds\.initial\.select\.name: full returns Selection, not an Acquisition"),
    ],
)
def test_bad_budgets_and_initial_selectors_write_nothing(compose_cfg, tmp_path, overrides, setting):
    out = tmp_path / "bad"
    with pytest.raises(ConfigError, match=setting) as err:
        _run(compose_cfg, out, "rounds.num_rounds=2", *overrides)
    assert "\n" not in str(err.value)
    assert not (out / "summary.json").exists() and not (out / "rounds").exists() and not (out / "checkpoints").exists()


def test_initial_set_picked_by_a_selector_from_features_before_training(compose_cfg, tmp_path):
    from selectkit import registry
    from selectkit.selection import Acquisition
    from selectkit.selector import Interval, Selector

    seen = {}

    @registry.register("farthest_test")
    class Farthest(Selector):
        """Largest feature norms first (records which providers it was offered)."""

        requires = frozenset({"features"})
        returns = Acquisition
        parameter_constraints = {"budget": Interval(1, None, integer=True)}

        def __init__(self, *, budget: int = 10) -> None:
            self.budget = budget

        def _select(self, pool, ctx):
            seen["available"], seen["round"] = pool.available(), ctx.round
            norms = np.linalg.norm(pool.features, axis=1)
            order = np.argsort(-norms, kind="stable")[: self.budget]
            return Acquisition(order.astype(np.int64), norms[order].astype(np.float32))

    try:
        out = tmp_path / "init"
        _, summary = _run(compose_cfg, out, "rounds.num_rounds=1", "+rounds.initial.select={name:farthest_test}", "rounds.initial.class_balanced=false")
    finally:
        registry.unregister("farthest_test")
    from selectkit.data import Digits

    source = Digits(seed=0)
    source.setup()
    x = source.train.features(np.arange(len(source.train)))
    expected = np.sort(np.argsort(-np.linalg.norm(x, axis=1), kind="stable")[:30])
    import torch

    state = torch.load(out / "checkpoints" / "rounds.pt", weights_only=True)
    first = np.setdiff1d(state["labelled"].numpy(), np.load(out / "rounds" / "round_000.npz")["ids"])
    assert np.array_equal(first, expected), "the initial set is the selector's pick"
    assert "labels" not in seen["available"] and "probs" not in seen["available"] and "features" in seen["available"]
    assert summary["rounds"][0]["labelled"] == 30 and summary["strategy"] == "least_confidence, initial set by farthest_test" and summary["initial_s"] > 0


def test_precheck_types_the_acquisition_stages_at_compose_time():
    from selectkit.schema import precheck

    precheck(["rounds=default", "rounds.acquire.name=least_confidence"])
    with pytest.raises(ConfigError, match=r"^rounds\.acquire\.name: unknown selector 'nope'"):
        precheck(["rounds=default", "rounds.acquire.name=nope"])
    with pytest.raises(ConfigError, match=r"rounds\.acquire\.bogus"):
        precheck(["rounds=default", "+rounds.acquire.bogus=1"])
    with pytest.raises(ConfigError, match=r"rounds\.initial\.select\.budget"):
        precheck(["rounds=default", "+rounds.initial.select={name:least_confidence,budget:x}"])


@pytest.mark.ddp
def test_two_process_ddp_round_loop_on_digits(tmp_path):
    """The loop under 2-process CPU DDP: every rank trains a shard of the same labelled set, scores a
    shard of the pool, and acquires the same items; rank 0 writes the round files."""
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "selectkit.train", "data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu",
         "trainer.progress_bar=false", *ROUNDS, "rounds.num_rounds=2", "trainer.strategy=ddp", "trainer.devices=2",
         "data.record_shards=true", f"hydra.run.dir={out}"],
        capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and [h["labelled"] for h in summary["rounds"]] == [30, 45, 60]
    from selectkit.data import Digits

    source = Digits(seed=0)
    source.setup()
    truth = source.train.labels()
    queries = _queries(out, 2)
    for q in queries:
        assert q["ids"].shape[0] == 15 and np.unique(q["ids"]).shape[0] == 15
        assert np.array_equal(q["labels"], truth[q["ids"]])
    import torch

    state = torch.load(out / "checkpoints" / "rounds.pt", weights_only=True)
    final_set = state["labelled"].numpy()
    assert set(queries[1]["ids"].tolist()) <= set(final_set.tolist()) and final_set.shape[0] == 60
    shards = [np.load(out / "shards" / f"epoch_0000_rank_{r}.npz") for r in range(2)]
    live = [s["indices"][s["live"]] for s in shards]
    assert not set(live[0]) & set(live[1]), "ranks train on disjoint shards"
    assert np.array_equal(np.sort(np.concatenate(live)), final_set), "together they are rank 0's labelled set, the last acquisition included: every rank acquired the same items"
