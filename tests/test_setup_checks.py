"""Checks before the first epoch: what a stage needs from the model, the model's output width, the
constructor arguments selectkit does not fill, and which nested ``_target_`` failed. Each refusal is one
line naming the setting, and nothing (metrics, checkpoint, summary) is written before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from torch import nn

from selectkit.errors import ConfigError
from selectkit.train import run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bring-your-own"
IMBALANCED = "+data.imbalance={classes:[1,3],keep_fraction:0.2}"


class ReluBetween(nn.Module):
    """An embedding layer whose output reaches the head through ``torch.relu``, not a module: no chain
    of modules maps the embeddings to the outputs."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(in_features, 16)
        self.out = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.out(torch.relu(self.body(x.flatten(1))))


class FiveLogits(nn.Module):
    """Always five outputs, with no ``num_classes`` argument for selectkit to fill."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 5))

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def user_models(monkeypatch):
    """This file's networks, importable by ``_target_`` as ``user_nets.<class>``."""
    module = types.ModuleType("user_nets")
    module.ReluBetween, module.FiveLogits = ReluBetween, FiveLogits
    monkeypatch.setitem(sys.modules, "user_nets", module)
    return "user_nets"


def _nothing_written(out: Path, names: tuple[str, ...] = ("metrics.jsonl", "summary.json", "checkpoints")) -> None:
    for name in names:
        assert not (out / name).exists(), f"{name} was written before the refusal"


def _byo(compose_cfg, monkeypatch, *overrides):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return compose_cfg(f"hydra.searchpath=[file://{EXAMPLE / 'conf'}]", "data=wine", "model=tabular_net", *overrides)


# ----------------------------------------------------------------------------------- item 3: SMOTE's map
def test_embedding_smote_trains_the_bring_your_own_model(compose_cfg, tmp_path, monkeypatch):
    """The shipped example names ``embedding_layer: body``, whose output is the head's input."""
    cfg = _byo(compose_cfg, monkeypatch, "pipeline=smote_rs2", "pipeline.stages.smote.space=embedding", "pipeline.stages.rs2.fraction=1.0", "trainer.max_epochs=4")
    out = tmp_path / "byo"
    summary = run(cfg, out)
    assert summary["status"] == "completed" and summary["synthetic"] > 0, "SMOTE made embedding-space samples"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["examples_seen"] == summary["train_size"] + summary["synthetic"], "the synthetic rows are trained on"


def test_a_model_without_a_map_is_refused_before_epoch_0(compose_cfg, tmp_path, user_models):
    cfg = compose_cfg(IMBALANCED, "pipeline=smote_rs2", "pipeline.stages.smote.space=embedding", "pipeline.stages.smote.start_epoch=1", "trainer.max_epochs=3")
    with open_dict(cfg):
        cfg.model = {"_target_": f"{user_models}.ReluBetween", "embedding_layer": "body", "head_layer": None}
    out = tmp_path / "relu"
    with pytest.raises(ConfigError) as err:
        run(cfg, out)
    line = str(err.value)
    assert "\n" not in line and "pipeline.stages.smote.space=embedding" in line and "model.embedding_layer" in line, line
    _nothing_written(out)


# ----------------------------------------------------------------------------------- item 4: output width
@pytest.mark.parametrize("rounds", [False, True])
def test_output_width_other_than_the_classes_is_refused(compose_cfg, tmp_path, rounds):
    extra = ["rounds=default", "rounds.num_rounds=1", "trainer.max_epochs=1"] if rounds else []
    cfg = compose_cfg("selector=full", "+model.num_classes=5", *extra)
    out = tmp_path / "five"
    with pytest.raises(ConfigError, match=r"^model outputs 5 values per item; the data has 10 classes: set model\.num_classes=10") as err:
        run(cfg, out)
    assert "\n" not in str(err.value)
    # a round loop checks before the oracle is asked for labels: nor its state (checkpoints/rounds.pt)
    _nothing_written(out, ("metrics.jsonl", "summary.json", "rounds.jsonl", "rounds", "checkpoints") if rounds else ("metrics.jsonl", "summary.json", "checkpoints"))


def test_output_width_of_a_model_without_num_classes_names_its_target(compose_cfg, tmp_path, user_models):
    cfg = compose_cfg("selector=full")
    with open_dict(cfg):
        cfg.model = {"_target_": f"{user_models}.FiveLogits", "embedding_layer": None, "head_layer": None}
    with pytest.raises(ConfigError, match=r"model outputs 5 values per item; the data has 10 classes: model\._target_ \(FiveLogits\) takes no num_classes"):
        run(cfg, tmp_path / "fixed")
    _nothing_written(tmp_path / "fixed")


def test_contrastive_models_may_output_any_width(compose_cfg, tmp_path):
    """Contrastive training reads embeddings, so its outputs are not checked against the classes."""
    cfg = compose_cfg("task=contrastive", "selector=random_tuples", "+model.num_classes=5", "trainer.max_epochs=1")
    assert run(cfg, tmp_path / "c")["status"] == "completed"


# ----------------------------------------------------------------------------------- items 5 and 6, from the CLI
def _cli(tmp_path, *args, cwd=None):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from selectkit.train import main; sys.argv[0] = 'selectkit-train'; main()", *args, f"hydra.run.dir={out}"],
        cwd=cwd, capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300,
    )
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("selectkit-train: error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    _nothing_written(out)
    return lines[0]


def test_constructor_arguments_selectkit_does_not_fill_are_named(tmp_path):
    line = _cli(tmp_path, "debug=fast", "model._target_=torch.nn.Linear", "~model.hidden", "~model.dropout", "selector=full")
    assert "Linear needs out_features" in line, line
    assert "in_features, in_channels, input_size, input_shape, num_classes" in line and "model.<name>" in line, line


def test_a_nested_target_typo_names_the_nested_key(tmp_path):
    line = _cli(tmp_path, "hydra.searchpath=[file://conf]", "data=wine", "model=tabular_net", "selector=rs2", "logger=none", "data.dataset._target_=pkg.Nope", cwd=EXAMPLE)
    assert "data.dataset._target_=pkg.Nope cannot be found" in line, line


@pytest.mark.parametrize(
    "override, setting",
    [
        ("+data.imbalance={_target_: pkg.Nope}", "data.imbalance._target_=pkg.Nope"),
        ("+model.act={_target_: pkg.Nope}", "model.act._target_=pkg.Nope"),
        ("+optim.optimizer.extra={_target_: pkg.Nope}", "optim.optimizer.extra._target_=pkg.Nope"),
        ("+task.inner={deeper: {_target_: pkg.Nope}}", "task.inner.deeper._target_=pkg.Nope"),
    ],
)
def test_nested_target_typos_name_the_innermost_key_in_every_group(compose_cfg, tmp_path, override, setting):
    cfg = compose_cfg("selector=full", override)
    with pytest.raises(ConfigError) as err:
        run(cfg, tmp_path / "n")
    assert str(err.value).startswith(f"{setting} cannot be found"), str(err.value)


def test_a_failing_nested_call_names_its_own_key(compose_cfg, tmp_path, monkeypatch):
    cfg = _byo(compose_cfg, monkeypatch, "selector=rs2", "data.val_dataset.split=bogus")
    with pytest.raises(ConfigError, match=r"^data\.val_dataset\._target_=winekit\.data\.WineRows: split must be"):
        run(cfg, tmp_path / "v")
