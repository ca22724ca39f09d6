"""``<run>/train.log``, Hydra's job log: it holds the run's own lines (start, one per epoch, the done
line) and, for a run stopped by a bad setting, the error line; a setting refused before the run starts
leaves no run directory at all. The console keeps its own lines, once each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TRAIN = [sys.executable, "-c", "import sys; from selectkit.train import main; sys.argv[0] = 'selectkit-train'; main()"]
FAST = ["debug=fast", "trainer.max_epochs=2", "trainer.progress_bar=false"]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, *args], capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300)


def _messages(log: Path) -> list[tuple[str, str, str]]:
    """``(logger, level, message)`` of each line of a log in Hydra's format."""
    out = []
    for line in log.read_text().splitlines():
        head, _, message = line.partition(" - ")
        _, name, level = head.rstrip("]").split("][")
        out.append((name, level, message))
    return out


def test_a_run_writes_its_lines_to_train_log(tmp_path):
    out = tmp_path / "run"
    proc = _train(*FAST, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _messages(out / "train.log")
    run_lines = [m for name, _, m in lines if name == "selectkit.run"]
    assert run_lines[0].startswith(f"selectkit-train: start: outputs in {out}") and "debug=fast" in run_lines[0]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [m for m in run_lines if m.startswith("epoch ")]
    assert [m.split(":")[0] for m in epochs] == [f"epoch {r['epoch']}" for r in metrics]
    assert all(f"val_acc {r['val_acc']:.4f}" in m and f"{r['examples_seen']:,} examples seen" in m for m, r in zip(epochs, metrics))
    done = proc.stdout.strip().splitlines()[-1]
    assert done.startswith("selectkit-train: done:") and run_lines[-1] == done, "the console's closing line, logged"
    assert "selectkit.run" not in proc.stdout and proc.stdout.count("selectkit-train: done:") == 1, "the console shows it once, unformatted"


def test_a_run_stopped_by_a_bad_setting_logs_its_error_line(tmp_path):
    out = tmp_path / "run"
    proc = _train(*FAST, "data.val_fraction=2.0", f"hydra.run.dir={out}")
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("selectkit-train: error: data.val_fraction")
    lines = _messages(out / "train.log")
    assert ("selectkit.run", "ERROR", error[0]) in lines and not (out / "summary.json").exists()


def test_a_setting_refused_before_the_run_leaves_no_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = _train(*FAST, "selector=nope", f"hydra.run.dir={out}")
    assert proc.returncode == 2 and "unknown selector 'nope'" in proc.stderr
    assert not out.exists()
