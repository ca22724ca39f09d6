"""``selectkit-report``: run discovery, table, CSV, plots, incomplete runs and error exits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from selectkit.errors import ConfigError
from selectkit.report import load_runs, main, summarize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(
    run_dir: Path,
    run_name: str,
    selector: str,
    seed: int,
    accs: list[float],
    epoch_s: float,
    select_per_epoch: float,
    examples_per_epoch: int,
    targets: tuple[float, ...] = (0.8, 0.85),
    completed: bool = True,
) -> None:
    """Write what ``selectkit-train`` leaves in a run directory."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nrun_name: {run_name}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- selector={selector}\n- seed={seed}\n")
    rows = []
    for epoch, acc in enumerate(accs):
        rows.append(
            {
                "epoch": epoch,
                "examples_seen": examples_per_epoch * (epoch + 1),
                "train_s": round(epoch_s * (epoch + 1), 4),
                "select_s": round(select_per_epoch * (epoch + 1), 4),
                "val_acc": acc,
                "val_loss": 1.0 - acc,
                "val_balanced_acc": acc - 0.01,
                "lr": 0.05,
            }
        )
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not completed:
        return
    time_to_target = {}
    for t in targets:
        hit = next((r for r in rows if r["val_acc"] >= t), None)
        time_to_target[f"{t:g}"] = None if hit is None else {"epoch": hit["epoch"], "wall_s": round(hit["train_s"] + hit["select_s"], 4), "examples_seen": hit["examples_seen"]}
    summary = {
        "status": "completed",
        "run_name": run_name,
        "selector": selector,
        "seed": seed,
        "targets": list(targets),
        "train_s": rows[-1]["train_s"],
        "select_s": rows[-1]["select_s"],
        "final": rows[-1],
        "best_val_acc": max(accs),
        "time_to_target": time_to_target,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


@pytest.fixture
def sweep(tmp_path):
    """A Hydra multirun folder: two completed jobs and one that stopped before writing its summary."""
    root = tmp_path / "multirun"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    _write_run(root / "0", "rs2", "rs2(ratio=0.1)", 0, [0.70, 0.82, 0.86, 0.87], epoch_s=2.0, select_per_epoch=0.1, examples_per_epoch=6000)
    _write_run(root / "1", "full", "full", 0, [0.78, 0.84, 0.845], epoch_s=20.0, select_per_epoch=0.0, examples_per_epoch=60000)
    _write_run(root / "2", "rs2", "rs2(ratio=0.1)", 1, [0.6, 0.7], epoch_s=2.0, select_per_epoch=0.1, examples_per_epoch=6000, completed=False)
    return root


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_on_a_multirun(sweep, capsys):
    assert main([str(sweep)]) == 0
    err = capsys.readouterr().err
    assert "warning: skipping incomplete run" in err and str(sweep / "2") in err

    md = (sweep / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | selector | seed | epochs | examples seen | train_s | select_s | select overhead % | final val_acc | best val_acc")
    assert table[0].rstrip().endswith("| time to 0.8 | time to 0.85 |")
    rs2 = next(line for line in table if line.startswith("| 0 |"))
    full = next(line for line in table if line.startswith("| 1 |"))
    assert "rs2(ratio=0.1)" in rs2 and "24,000" in rs2 and "0.8700" in rs2 and "4.8%" in rs2
    assert "4.2 s (epoch 1)" in rs2 and "6.3 s (epoch 2)" in rs2
    assert "20.0 s (epoch 0)" not in full and "40.0 s (epoch 1)" in full and "not reached" in full
    assert "Incomplete runs" in md and "`2`" in md

    rows = _read_csv(sweep / "report.csv")
    assert [r["run"] for r in rows] == ["0", "1"]
    assert rows[0]["selector"] == "rs2(ratio=0.1)" and rows[0]["seed"] == "0"
    assert int(rows[0]["epochs"]) == 4 and int(rows[0]["examples_seen"]) == 24000
    assert float(rows[0]["train_s"]) == pytest.approx(8.0) and float(rows[0]["select_s"]) == pytest.approx(0.4)
    assert float(rows[0]["select_overhead_pct"]) == pytest.approx(100 * 0.4 / 8.4)
    assert float(rows[0]["final_val_acc"]) == pytest.approx(0.87) and float(rows[1]["best_val_acc"]) == pytest.approx(0.845)
    assert float(rows[0]["time_to_0.85"]) == pytest.approx(6.3) and rows[1]["time_to_0.85"] == ""
    assert rows[0]["overrides"] == "selector=rs2(ratio=0.1) seed=0"

    for name in ("acc_vs_wallclock.png", "acc_vs_examples.png"):
        png = (sweep / name).read_bytes()
        assert len(png) > 1000 and png[:8] == PNG_MAGIC


def test_several_dirs_out_and_chosen_targets(tmp_path):
    _write_run(tmp_path / "a", "random", "random(ratio=0.1)", 0, [0.5, 0.79, 0.81], 1.0, 0.0, 100)
    _write_run(tmp_path / "b", "rs2", "rs2(ratio=0.1)", 3, [0.6, 0.9], 1.0, 0.5, 100)
    out = tmp_path / "reports" / "cmp"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--targets", "0.75", "0.9"]) == 0
    rows = _read_csv(out / "report.csv")
    assert [r["run"] for r in rows] == ["a", "b"]
    assert float(rows[0]["time_to_0.75"]) == pytest.approx(2.0) and rows[0]["epoch_to_0.75"] == "1"
    assert rows[0]["time_to_0.9"] == "" and float(rows[1]["time_to_0.9"]) == pytest.approx(3.0)
    md = (out / "report.md").read_text()
    assert "time to 0.75" in md and "time to 0.9" in md and "time to 0.85" not in md
    assert (out / "acc_vs_examples.png").read_bytes()[:8] == PNG_MAGIC


def test_load_runs_and_summarize(sweep):
    runs = load_runs([sweep])
    assert [r.name for r in runs] == ["0", "1", "2"]
    assert [r.completed for r in runs] == [True, True, False]
    rows = summarize(runs)
    assert len(rows) == 2 and rows[1]["select_overhead_pct"] == 0.0
    assert rows[0]["final_balanced_acc"] == pytest.approx(0.86)
    with pytest.raises(ConfigError, match="does not exist"):
        load_runs([sweep / "nope"])


def test_per_selector_means_with_several_seeds(tmp_path):
    for seed in (0, 1):
        _write_run(tmp_path / "sweep" / str(seed), "rs2", "rs2", seed, [0.8 + 0.02 * seed, 0.86], 1.0, 0.1, 10)
    assert main([str(tmp_path / "sweep")]) == 0
    md = (tmp_path / "sweep" / "report.md").read_text()
    assert "By selector" in md and "| rs2 | 2 |" in md


def test_failed_summary_is_incomplete(tmp_path, capsys):
    _write_run(tmp_path / "ok", "full", "full", 0, [0.9], 1.0, 0.0, 10)
    _write_run(tmp_path / "bad", "rs2", "rs2", 0, [0.9], 1.0, 0.0, 10)
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    (tmp_path / "bad" / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    assert main([str(tmp_path)]) == 0
    assert "'failed'" in capsys.readouterr().err
    assert [r["run"] for r in _read_csv(tmp_path / "report.csv")] == ["ok"]


def test_missing_dir_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and err.startswith("selectkit-report: error:")


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no completed runs" in err


def test_only_incomplete_runs_is_an_error(tmp_path, capsys):
    _write_run(tmp_path / "r", "rs2", "rs2", 0, [0.5], 1.0, 0.0, 10, completed=False)
    assert main([str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "warning" in lines[0] and "error: no completed runs" in lines[-1] and "1 incomplete" in lines[-1]
    assert not (tmp_path / "report.md").exists()


def test_bad_targets_exit_2(sweep, capsys):
    assert main([str(sweep), "--targets", "85"]) == 2
    assert "--targets" in capsys.readouterr().err


def test_headline_says_how_much_sooner_against_each_control(tmp_path):
    from selectkit.report import speedups

    _write_run(tmp_path / "0_rs2", "rs2", "rs2", 0, [0.70, 0.85, 0.88, 0.90], 1.0, 0.0, 6000)
    _write_run(tmp_path / "1_full", "full", "full", 0, [0.80, 0.88, 0.91], 10.0, 0.0, 60000)
    _write_run(tmp_path / "2_full_compressed", "full_compressed", "full", 0, [0.78, 0.86], 2.0, 0.0, 60000)
    runs = load_runs([tmp_path])
    target, sentences = speedups(runs, summarize(runs))
    assert target == pytest.approx(0.89), "full data's final accuracy minus 2 points; the compressed control is no reference"
    assert len(sentences) == 1
    # rs2 reaches 0.89 in its 4th epoch (4 s), full in its 3rd (30 s), the compressed control never
    assert "after 4.0 s" in sentences[0] and "7.5x sooner than full (30.0 s)" in sentences[0]
    assert "full_compressed never reached it" in sentences[0]
    assert main([str(tmp_path)]) == 0
    assert sentences[0] in (tmp_path / "report.md").read_text()


def test_headline_says_later_when_the_subset_is_slower(tmp_path):
    from selectkit.report import speedups

    _write_run(tmp_path / "0_rs2", "rs2", "rs2", 0, [0.70, 0.80, 0.90], 10.0, 0.0, 6000)
    _write_run(tmp_path / "1_full", "full", "full", 0, [0.91, 0.91], 5.0, 0.0, 60000)
    runs = load_runs([tmp_path])
    _, sentences = speedups(runs, summarize(runs))
    assert "6.0x later than full (5.0 s)" in sentences[0]
