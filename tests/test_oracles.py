"""Oracles: the file-based oracle for people (query file, labels file, every way a labels file can be
wrong), its round trip through real ``selectkit-train`` processes, and the round state it keeps."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.oracles import WAITING_EXIT, FileOracle, LabelsPending, check_answer
from selectkit.train import run

TRAIN = [sys.executable, "-m", "selectkit.train"]
FAST = ["data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false", "trainer.max_epochs=1"]
ROUNDS = ["rounds=files", "selector=full", "trainer.max_epochs=1", "rounds.initial.size=20", "rounds.budget=10", "rounds.num_rounds=2"]
SIMULATED = ["rounds=default", *ROUNDS[1:]]


class _Train:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _Source:
    """A data source stub with ``n`` items, named classes and an ``item_info`` hook giving paths."""

    def __init__(self, n: int = 8, info: bool = True) -> None:
        self.train = _Train(n)
        self.meta = {"num_classes": 3, "classes": ["cat", "dog", "owl"]}
        if info:
            self.item_info = lambda ids: {"path": [f"img/{i}.png" for i in ids]}


def _oracle(tmp_path: Path, **kw) -> FileOracle:
    oracle = FileOracle(folder=str(tmp_path / "labels"))
    oracle.setup(_Source(**kw))
    oracle.round = 3
    return oracle


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_query_file_lists_the_asked_ids_with_the_datas_paths_then_labels_are_read(tmp_path):
    oracle = _oracle(tmp_path)
    asked = np.array([5, 1, 6], dtype=np.int64)
    with pytest.raises(LabelsPending) as wait:
        oracle.label(asked)
    query, labels = oracle.paths(3)
    assert wait.value.query == query and wait.value.labels == labels and query.name == "round_003_query.csv"
    rows = list(csv.reader(query.open()))
    assert rows == [["id", "label", "path"], ["5", "", "img/5.png"], ["1", "", "img/1.png"], ["6", "", "img/6.png"]]
    assert "\n" not in str(wait.value) and str(labels) in str(wait.value) and "cat" in str(wait.value)
    # filled in any order, by class number or class name, extra columns and comments ignored
    _write(labels, "# labelled by hand\nid,label,path\n6,owl,img/6.png\n5,0,img/5.png\n\n1,dog,img/1.png\n")
    got = check_answer(asked, oracle.label(asked), 3)
    assert got.tolist() == [0, 1, 2]


def test_a_source_without_item_info_gets_ids_only(tmp_path):
    oracle = _oracle(tmp_path, info=False)
    with pytest.raises(LabelsPending):
        oracle.label(np.array([2, 0], dtype=np.int64))
    assert list(csv.reader(oracle.paths(3)[0].open())) == [["id", "label"], ["2", ""], ["0", ""]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,label\n5,0\n1,1\n", r"labels\.csv: 1 of the 3 asked ids have no row \(e\.g\. id 6\)"),
        ("id,label\n5,0\n1,1\n6,2\n7,1\n", r"labels\.csv:5: id 7 was not asked in this round"),
        ("id,label\n5,0\n1,1\n6,2\n99,1\n", r"labels\.csv:5: unknown id 99; the training set has ids 0\.\.7"),
        ("id,label\n5,0\n1,1\n5,2\n6,1\n", r"labels\.csv:4: id 5 appears twice \(first on line 2\)"),
        ("id,label\n5,0\nx,1\n6,2\n", r"labels\.csv:3: id 'x' is not an integer"),
        ("id,label\n5,0\n1,\n6,2\n", r"labels\.csv:3: the label is empty"),
        ("id,label\n5,0\n1,7\n6,2\n", r"labels\.csv:3: label 7 is not a class"),
        ("id,label\n5,0\n1,horse\n6,2\n", r"labels\.csv:3: label 'horse' is not a class"),
        ("id,label\n5,0\n1\n6,2\n", r"labels\.csv:3: the row has 1 fields"),
        ("item,class\n5,0\n", r"labels\.csv:1: the header must have the columns id and label"),
        ("\n\n", r"labels\.csv is empty"),
    ],
)
def test_bad_labels_files_are_one_line_errors_naming_file_and_line(tmp_path, text, message):
    oracle = _oracle(tmp_path)
    _write(oracle.paths(3)[1], text)
    with pytest.raises(ConfigError, match=r"^rounds\.oracle: .*" + message) as err:
        oracle.label(np.array([5, 1, 6], dtype=np.int64))
    assert "\n" not in str(err.value)


def _queries(out: Path, rounds: int) -> list:
    return [np.load(out / "rounds" / f"round_{r:03d}.npz") for r in range(rounds)]


def _fill(pending: LabelsPending | str, truth: np.ndarray, out: Path | None = None) -> Path:
    """Fill a query file from the true labels and save it under the labels file's name."""
    if isinstance(pending, LabelsPending):
        query, labels = pending.query, pending.labels
    else:
        query = Path(pending.split(" items to label in ", 1)[1].split("; fill", 1)[0])
        labels = Path(pending.split("and save it as ", 1)[1].split("; then run:", 1)[0])
    rows = list(csv.reader(query.open()))
    lines = [",".join(rows[0])] + [f"{r[0]},{truth[int(r[0])]}" + "".join("," + c for c in r[2:]) for r in rows[1:]]
    labels.write_text("\n".join(lines) + "\n")
    return labels


def _truth() -> np.ndarray:
    from selectkit.data import Digits

    source = Digits(seed=0)
    source.setup()
    return source.train.labels()


def test_bad_labels_keep_the_round_state_and_the_fixed_file_resumes(compose_cfg, tmp_path):
    """In process: every stop (waiting, or a bad file) leaves checkpoints/rounds.pt as it was; the
    fixed file resumes, and the run ends with the queries of the simulated oracle's run."""
    truth = _truth()
    out = tmp_path / "files"
    state = out / "checkpoints" / "rounds.pt"
    cfg = compose_cfg(*ROUNDS)
    with pytest.raises(LabelsPending) as wait:
        run(cfg, out)
    assert wait.value.query.name == "initial_query.csv" and not (out / "summary.json").exists()
    labels = _fill(wait.value, truth)
    resumed = compose_cfg(*ROUNDS, f"resume={state}")
    with pytest.raises(LabelsPending) as wait:
        run(resumed, out)
    assert wait.value.query.name == "round_000_query.csv"
    assert "resume=" in str(wait.value)
    before = state.read_bytes()
    good = _fill(wait.value, truth)
    text = good.read_text()
    rows = text.splitlines()
    other = int(np.setdiff1d(np.arange(truth.shape[0]), [int(r.split(",")[0]) for r in rows[1:]])[0])
    for bad in (text + rows[1] + "\n", text.replace(rows[1] + "\n", ""), text + f"{other},1\n", text.replace(rows[2], rows[2].split(",")[0] + ",x")):
        good.write_text(bad)
        with pytest.raises(ConfigError, match=r"^rounds\.oracle: "):
            run(resumed, out)
        assert state.read_bytes() == before, "a bad labels file leaves the round state as it was"
        assert not (out / "rounds" / "round_000.json").exists()
    good.write_text(text)
    with pytest.raises(LabelsPending) as wait:
        run(resumed, out)
    assert wait.value.query.name == "round_001_query.csv"
    _fill(wait.value, truth)
    summary = run(resumed, out)
    assert summary["status"] == "completed" and summary["labels_used"] == 40
    # people label 20 items for round 1; the final model trains on all 40, and nobody is asked after it
    assert summary["final"] == summary["rounds"][-1] and summary["final"]["labelled"] == 40 and summary["final"]["queried"] == 0
    assert not (out / "labels" / "round_002_query.csv").exists()
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["round"] == 2 and rows[-1]["examples_seen"] - rows[-2]["examples_seen"] == 40
    sim = compose_cfg(*SIMULATED)
    expected = run(sim, tmp_path / "sim")
    for a, b in zip(_queries(out, 2), _queries(tmp_path / "sim", 2)):
        assert np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["labels"], b["labels"])
    assert [h["val_acc"] for h in summary["rounds"]] == [h["val_acc"] for h in expected["rounds"]]
    assert labels.exists()


@pytest.mark.slow
def test_labelling_round_trip_through_real_processes(compose_cfg, tmp_path):
    """selectkit-train stops with exit code 75 and a message naming the file to fill and the exact
    command; the printed command, run as given after the file is filled, continues; the finished run
    asks what a run with the simulated oracle asks."""
    truth = _truth()
    out = tmp_path / "people"
    env = dict(os.environ, WANDB_MODE="disabled")
    command = TRAIN + FAST + ROUNDS + [f"hydra.run.dir={out}"]
    stops = []
    for _ in range(4):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == WAITING_EXIT, proc.stderr[-3000:]
        line = proc.stdout.strip().splitlines()[-1]
        assert line.startswith("selectkit-train: waiting for labels: ") and "error" not in line.lower()
        assert not (out / "summary.json").exists(), "a waiting run has no summary"
        stops.append(_fill(line, truth).name)
        shown = shlex.split(line.split("; then run: ", 1)[1])
        assert shown[0] == "selectkit-train" and f"resume={out / 'checkpoints' / 'rounds.pt'}" in shown and f"hydra.run.dir={out}" in shown
        command = TRAIN + shown[1:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stops == ["initial_labels.csv", "round_000_labels.csv", "round_001_labels.csv"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["labels_used"] == 40
    sim = compose_cfg(*SIMULATED)
    expected = run(sim, tmp_path / "sim")
    for a, b in zip(_queries(out, 2), _queries(tmp_path / "sim", 2)):
        assert np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["labels"], b["labels"])
    assert [h["labelled"] for h in summary["rounds"]] == [h["labelled"] for h in expected["rounds"]] == [20, 30, 40]
    state = torch.load(out / "checkpoints" / "rounds.pt", weights_only=True)
    assert state["pending"] is None and state["next_round"] == 3


@pytest.mark.slow
def test_the_printed_resume_command_runs_as_pasted_and_composes_the_same_config(tmp_path):
    """A project of one's own, its configs found through a relative ``hydra.searchpath`` in a folder
    with a space in its name, and an override with a quoted space: the command the waiting run prints,
    run by a shell from another folder, composes the same config (exit 75 again: the labels are still
    missing)."""
    project = tmp_path / "my project"
    (project / "conf" / "model").mkdir(parents=True)
    (project / "conf" / "model" / "tiny.yaml").write_text("_target_: selectkit.models.MLP\nhidden: [7]\n")
    out = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="disabled", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    args = ["hydra.searchpath=[file://conf]", *FAST, "model=tiny", *ROUNDS, "run_name='people, round one'", f"hydra.run.dir={out}"]
    first = subprocess.run(TRAIN + args, capture_output=True, text=True, env=env, cwd=project, timeout=300)
    assert first.returncode == WAITING_EXIT, first.stderr[-3000:]
    composed = (out / ".hydra" / "config.yaml").read_text()
    command = first.stdout.strip().splitlines()[-1].split("; then run: ", 1)[1]
    assert f"file://{project / 'conf'}" in command
    again = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == WAITING_EXIT, again.stderr[-3000:]
    resumed = (out / ".hydra" / "config.yaml").read_text()
    from omegaconf import OmegaConf

    a, b = OmegaConf.create(composed), OmegaConf.create(resumed)
    assert b.resume == str(out / "checkpoints" / "rounds.pt") and a.resume is None
    a.resume = b.resume
    assert a == b and b.model.hidden == [7] and b.run_name == "people, round one"
