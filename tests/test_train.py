"""End-to-end training through the Hydra app on real data (digits), outputs, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.train import run

TRAIN = [sys.executable, "-m", "selectkit.train"]
CLI_FAST = ["data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false"]


def _rows(out):
    return [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]


def test_rs2_end_to_end_writes_every_output(compose_cfg, tmp_path):
    cfg = compose_cfg("selector=rs2", "selector.fraction=0.25", "trainer.max_epochs=4", "targets=[0.5,0.99]")
    out = tmp_path / "run"
    summary = run(cfg, out)
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    n_train = summary["train_size"]
    m = int(np.ceil(0.25 * n_train))
    assert [r["examples_seen"] for r in rows] == [m * (e + 1) for e in range(4)]
    assert all(rows[i]["train_s"] < rows[i + 1]["train_s"] for i in range(3))
    assert all({"val_acc", "val_loss", "select_s", "lr"} <= set(r) for r in rows)
    seen = []
    for e in range(4):
        z = np.load(out / "selections" / f"epoch_{e:04d}.npz")
        assert z["indices"].dtype == np.int64 and z["indices"].size == m
        seen.append(z["indices"])
    assert np.unique(np.concatenate(seen)).size == n_train, "4 epochs at 25% cover the training set"
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["selector"] == "rs2" and s["epochs"] == 4
    assert s["final"]["val_acc"] > 0.5, "an MLP learns digits"
    assert s["time_to_target"]["0.5"]["epoch"] <= 3 and s["time_to_target"]["0.99"] is None
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_lr_schedule_sized_on_steps_taken(compose_cfg, tmp_path):
    cfg = compose_cfg("selector=rs2", "selector.fraction=0.1", "trainer.max_epochs=2", "optim=sgd")
    run(cfg, tmp_path / "r")
    rows = _rows(tmp_path / "r")
    assert rows[-1]["lr"] < 0.05 * 1e-2, "one-cycle ends near zero exactly when the (short) run ends"


def test_multi_stage_pipeline_from_yaml(compose_cfg, tmp_path):
    cfg = compose_cfg("pipeline=random_then_rs2", "trainer.max_epochs=2")
    summary = run(cfg, tmp_path / "p")
    assert summary["selector"] == "static>rs2"
    static = None
    for e in range(2):
        idx = np.load(tmp_path / "p" / "selections" / f"epoch_{e:04d}.npz")["indices"]
        assert idx.size == int(np.ceil(0.2 * np.ceil(0.5 * summary["train_size"])))
    assert summary["selection_size"] == idx.size


def _module(task):
    from functools import partial

    from selectkit.lightning import TaskModule
    from selectkit.models import ModelAdapter

    net = torch.nn.Linear(3, 2)
    task.setup({"num_classes": 2, "input_shape": (3,)})
    module = TaskModule(net, task, ModelAdapter(net, num_classes=2), partial(torch.optim.SGD, lr=0.1))
    module.log = lambda *a, **k: None
    return module


def test_weights_and_padding_mask_reach_the_loss():
    from selectkit.tasks import Classification

    module = _module(Classification())
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    ones, live = torch.ones(4), torch.ones(4, dtype=torch.bool)
    plain = module.training_step({"x": x, "y": y, "weight": ones, "mask": live}, 0)
    doubled = module.training_step({"x": x, "y": y, "weight": torch.full((4,), 2.0), "mask": live}, 0)
    padded = module.training_step({"x": x, "y": y, "weight": ones, "mask": torch.tensor([True, True, False, False])}, 0)
    ref = torch.nn.functional.cross_entropy(module.model(x[:2]), y[:2])
    assert torch.isclose(doubled, 2 * plain) and torch.isclose(padded, ref), "padding rows add no loss and count nowhere"
    before = module.examples_in_epoch
    module.training_step({"x": x, "y": y, "weight": ones, "mask": torch.tensor([True, False, False, False])}, 0)
    assert module.examples_in_epoch - before == 1, "padding is never counted as data"


def test_self_normalized_weights_keep_the_scale():
    from selectkit.tasks import Classification

    module = _module(Classification(weight_norm="self_normalized"))
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    live = torch.ones(4, dtype=torch.bool)
    plain = module.training_step({"x": x, "y": y, "weight": torch.ones(4), "mask": live}, 0)
    doubled = module.training_step({"x": x, "y": y, "weight": torch.full((4,), 2.0), "mask": live}, 0)
    assert torch.isclose(doubled, plain)


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "override,setting",
    [
        ("selector.fraction=1.5", "selector.fraction"),
        ("selector.fraction=0", "selector.fraction"),
        ("selector.fraction=abc", "selector.fraction"),
        ("trainer.max_epochs=abc", "trainer.max_epochs"),
        ("data.batch_size=-3", "data.batch_size"),
        ("selector=nope", "installed selectors: adasyn"),
        ("selector.name=nope", "installed selectors"),
        ("+selector.bogus=1", "selector.bogus"),
        ("model._target_=nowhere.Net", "model._target_=nowhere.Net"),
        ("data._target_=selectkit.data.Nope", "data._target_"),
        ("optim.optimizer._target_=torch.optim.Nope", "optim.optimizer._target_"),
        ("task.weight_norm=median", "task.weight_norm"),
        ("providers.memory_cap_gb=-1", "providers.memory_cap_gb"),
        ("trainer.retain_freed_mb=-1", "trainer.retain_freed_mb"),
    ],
)
def test_bad_settings_fail_in_one_line(tmp_path, override, setting):
    out = tmp_path / "bad"
    proc = subprocess.run(
        TRAIN + CLI_FAST + [override, f"hydra.run.dir={out}"],
        capture_output=True,
        text=True,
        env=dict(os.environ, WANDB_MODE="disabled"),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("selectkit-train: error:")]
    assert len(lines) == 1 and setting in lines[0], proc.stderr[-2000:]
    assert not (out / "summary.json").exists()


def test_missing_dataset_names_data_dir(compose_cfg, tmp_path, monkeypatch):
    import selectkit.data as data

    monkeypatch.setattr(data, "STANDARD_DIRS", [tmp_path / "nowhere"])
    monkeypatch.setenv("SELECTKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if hasattr(data, "_cache_clear"):
        data._cache_clear()
    cfg = compose_cfg("data=fashion_mnist", f"data.data_dir={tmp_path / 'nodata'}")
    with pytest.raises(ConfigError, match=r"data\.data_dir") as err:
        run(cfg, tmp_path / "m")
    assert "\n" not in str(err.value) and "dataset-fashion-mnist" in str(err.value)
    assert not (tmp_path / "m" / "summary.json").exists()


def test_empty_pool_refused(compose_cfg, tmp_path):
    cfg = compose_cfg("+data.imbalance={classes:[0,1,2,3,4,5,6,7,8,9],keep_fraction:0.0}")
    with pytest.raises(ConfigError, match="empty"):
        run(cfg, tmp_path / "e")


# ----------------------------------------------------------------------------------- resume
def _selections(out):
    return {int(p.stem.split("_")[1]): np.load(p)["indices"] for p in sorted((out / "selections").glob("epoch_*.npz"))}


EPOCHS = 60


def test_kill_and_resume_reproduces_subset_sequence(tmp_path):
    env = dict(os.environ, WANDB_MODE="disabled")
    common = TRAIN + CLI_FAST + ["selector=rs2", "selector.fraction=0.2", "seed=11", f"trainer.max_epochs={EPOCHS}"]
    full = tmp_path / "full"
    subprocess.run(common + [f"hydra.run.dir={full}"], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(common + [f"hydra.run.dir={killed}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and len(list((killed / "selections").glob("epoch_*.npz"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "a killed run leaves no summary"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    resumed_from = state["epoch"]
    assert resumed_from < EPOCHS - 1, "the kill came before the end"

    resumed = tmp_path / "resumed"
    subprocess.run(common + [f"hydra.run.dir={resumed}", f"resume={ckpt}"], check=True, env=env, capture_output=True)
    ref, got = _selections(full), _selections(resumed)
    assert sorted(got) == list(range(resumed_from, EPOCHS)) or sorted(got) == list(range(resumed_from + 1, EPOCHS))
    for epoch, idx in got.items():
        assert np.array_equal(idx, ref[epoch]), f"epoch {epoch} differs after resume"
    rows = _rows(resumed)
    assert [r["epoch"] for r in rows] == list(range(EPOCHS)), "metrics carry the epochs before the kill"
    assert json.loads((resumed / "summary.json").read_text())["epochs"] == EPOCHS


# ----------------------------------------------------------------------------------- DDP
@pytest.mark.ddp
def test_two_process_ddp_disjoint_shards_of_same_subset(tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        TRAIN + CLI_FAST + [
            "selector=rs2", "selector.fraction=0.3", "trainer.max_epochs=2", "trainer.strategy=ddp",
            "trainer.devices=2", "data.record_shards=true", f"hydra.run.dir={out}",
        ],
        capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for epoch in range(2):
        subset = np.load(out / "selections" / f"epoch_{epoch:04d}.npz")["indices"]
        shards = [np.load(out / "shards" / f"epoch_{epoch:04d}_rank_{r}.npz") for r in range(2)]
        live = [s["indices"][s["live"]] for s in shards]
        assert len(shards[0]["indices"]) == len(shards[1]["indices"])
        assert not set(live[0]) & set(live[1]), "ranks see disjoint shards"
        assert np.array_equal(np.sort(np.concatenate(live)), np.sort(subset)), "together they are the subset"
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2
    assert _rows(out)[-1]["examples_seen"] == 2 * len(subset)


def test_wandb_offline_run_records_metrics_and_manifest(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg("logger=wandb", "selector=rs2", "selector.fraction=0.3", "trainer.max_epochs=2")
    out = tmp_path / "wb"
    summary = run(cfg, out)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one offline W&B run, no account needed"
    files = {p.name for p in runs[0].rglob("*")}
    assert any(name.endswith(".wandb") for name in files)
    assert summary["status"] == "completed"
