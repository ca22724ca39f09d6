"""The offline W&B run, read back with W&B's own reader of ``.wandb`` files (``wandb leet inspect``):
its history holds every metric of ``metrics.jsonl`` (``lr`` and ``val_class_recall/<c>`` included), its
selection-manifest artifact names files inside the run directory, by paths relative to it, and
``$WANDB_DIR`` decides where the run goes. ``WANDB_MODE=offline`` in these tests only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selectkit.train import run


def _records(wandb_file: Path) -> list[dict]:
    """Every record of an offline run's transaction log, as W&B's reader prints them."""
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "No such command" in proc.stderr:
        pytest.skip("this wandb has no `wandb leet inspect` (the reader of .wandb files)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline, with its data folder (where artifacts are staged by default) under ``tmp_path``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    monkeypatch.delenv("WANDB_DIR", raising=False)
    return tmp_path / "wandb_data"


def _train(compose_cfg, out: Path) -> dict:
    return run(compose_cfg("logger=wandb", "trainer.max_epochs=2"), out)


def test_offline_run_has_lr_class_recall_and_a_manifest_inside_the_run(compose_cfg, tmp_path, offline):
    out = tmp_path / "run"
    _train(compose_cfg, out)
    (wandb_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    records = _records(wandb_file)

    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    keys = {k for item in history for k in item}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    classes = len(metrics[-1]["val_class_recall"])
    assert "lr" in keys and {f"val_class_recall/{c}" for c in range(classes)} <= keys, sorted(keys)
    logged_lr = [item["lr"] for item in history if "lr" in item]
    assert logged_lr == pytest.approx([m["lr"] for m in metrics])
    last = [item for item in history if "val_class_recall/0" in item][-1]
    assert [last[f"val_class_recall/{c}"] for c in range(classes)] == pytest.approx(metrics[-1]["val_class_recall"], abs=1e-5)

    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "selection-manifest"
    contents = {c["path"]: c["local_path"] for c in artifact["manifest"]["contents"]}
    assert set(contents) == {p.name for p in (out / "selections").iterdir()}
    assert all(p == f"selections/{name}" for name, p in contents.items()), "relative to the run directory"
    assert not offline.exists() or not any(offline.rglob("*")), "nothing staged outside the run directory"

    copy = tmp_path / "elsewhere" / "copied_run"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    for name, path in contents.items():
        assert (copy / path).read_bytes() == (copy / "selections" / name).read_bytes(), "a copy of the run folder holds every file to sync"


def test_wandb_dir_wins_over_the_run_directory(compose_cfg, tmp_path, offline, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_here"))
    out = tmp_path / "run"
    _train(compose_cfg, out)
    assert not (out / "wandb").exists()
    (wandb_file,) = (tmp_path / "wandb_here").glob("wandb/offline-run-*/run-*.wandb")
    (artifact,) = [r["artifact"] for r in _records(wandb_file) if r["type"] == "artifact"]
    assert {c["local_path"] for c in artifact["manifest"]["contents"]} == {f"selections/{p.name}" for p in (out / "selections").iterdir()}
