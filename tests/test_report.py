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
    dataset: str = "digits",
    overrides: tuple[str, ...] = (),
) -> None:
    """Write what ``selectkit-train`` leaves in a run directory."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nrun_name: {run_name}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in (f"selector={selector}", f"seed={seed}", *overrides)))
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
        "dataset": dataset,
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
    assert table[0].startswith("| run | dataset | selector | seed | epochs | examples seen | train_s (total) | select_s (total) | select overhead % | final val_acc | best val_acc")
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
    assert "By dataset and selector" in md and "| digits | rs2 | 2 |" in md


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
    from selectkit.report import headlines, speedups

    _write_run(tmp_path / "0_rs2", "rs2", "rs2", 0, [0.70, 0.85, 0.88, 0.90], 1.0, 0.0, 6000)
    _write_run(tmp_path / "1_full", "full", "full", 0, [0.80, 0.88, 0.91], 10.0, 0.0, 60000)
    _write_run(tmp_path / "2_full_compressed", "full_compressed", "full", 0, [0.78, 0.86], 2.0, 0.0, 60000)
    runs = load_runs([tmp_path])
    reaches = speedups(runs, summarize(runs))
    assert [r["run"] for r in reaches] == ["0_rs2"]
    assert reaches[0]["target"] == pytest.approx(0.89), "full data's final accuracy minus 2 points; the compressed control is no reference"
    sentences = headlines(reaches)
    assert len(sentences) == 1 and sentences[0].startswith("digits: rs2 reached 0.8900")
    # rs2 reaches 0.89 in its 4th epoch (4 s), full in its 3rd (30 s), the compressed control never
    assert "after 4.0 s" in sentences[0] and "7.5x sooner than full (30.0 s)" in sentences[0]
    assert "full_compressed never reached it" in sentences[0]
    assert main([str(tmp_path)]) == 0
    assert sentences[0] in (tmp_path / "report.md").read_text()


def test_headline_says_later_when_the_subset_is_slower(tmp_path):
    from selectkit.report import headlines, speedups

    _write_run(tmp_path / "0_rs2", "rs2", "rs2", 0, [0.70, 0.80, 0.90], 10.0, 0.0, 6000)
    _write_run(tmp_path / "1_full", "full", "full", 0, [0.91, 0.91], 5.0, 0.0, 60000)
    runs = load_runs([tmp_path])
    sentences = headlines(speedups(runs, summarize(runs)))
    assert "6.0x later than full (5.0 s)" in sentences[0]


def test_a_round_loop_row_has_the_whole_runs_seconds(compose_cfg, tmp_path):
    """A round loop's `final` is its last round: the table's seconds are the whole run's, as in summary.json."""
    from selectkit.train import run

    summary = run(compose_cfg("rounds=default", "selector=full", "trainer.max_epochs=2", "rounds.initial.size=20", "rounds.budget=10", "rounds.num_rounds=3"), tmp_path / "al")
    assert summary["final"]["train_s"] < summary["train_s"], "the check can fail: the last round trained for less than the run"
    assert main([str(tmp_path / "al")]) == 0
    row = _read_csv(tmp_path / "al" / "report.csv")[0]
    assert float(row["train_s"]) == pytest.approx(summary["train_s"]) and float(row["select_s"]) == pytest.approx(summary["select_s"])
    cells = next(line for line in (tmp_path / "al" / "report.md").read_text().splitlines() if line.startswith("| al |")).split(" | ")
    header = next(line for line in (tmp_path / "al" / "report.md").read_text().splitlines() if line.startswith("| run |")).split(" | ")
    assert cells[header.index("train_s (total)")] == f"{summary['train_s']:.1f}"


def test_each_dataset_is_judged_against_its_own_full_data_run(tmp_path, capsys):
    from selectkit.report import full_data_targets, speedups

    _write_run(tmp_path / "0_d_full", "full", "full", 0, [0.90, 0.95], 10.0, 0.0, 1000, dataset="digits")
    _write_run(tmp_path / "2_d_rs2", "rs2", "rs2", 0, [0.80, 0.90], 1.0, 0.0, 100, dataset="digits")
    _write_run(tmp_path / "1_b_full", "full", "full", 0, [0.70, 0.80], 4.0, 0.0, 400, dataset="breast_cancer")
    _write_run(tmp_path / "3_b_rs2", "rs2", "rs2", 0, [0.70, 0.79], 1.0, 0.0, 40, dataset="breast_cancer")
    runs = load_runs([tmp_path])
    rows = summarize(runs)
    assert full_data_targets(rows) == {"breast_cancer": pytest.approx(0.78), "digits": pytest.approx(0.93)}
    reaches = {r["run"]: r for r in speedups(runs, rows)}
    assert reaches["3_b_rs2"]["target"] == pytest.approx(0.78) and reaches["3_b_rs2"]["wall_s"] == pytest.approx(2.0)
    assert reaches["3_b_rs2"]["controls"] == [("full", pytest.approx(8.0))], "against breast cancer's full run only"
    assert reaches["2_d_rs2"]["target"] == pytest.approx(0.93) and reaches["2_d_rs2"]["wall_s"] is None
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "breast_cancer: rs2 reached 0.7800 (full data's final accuracy minus 2 points) after 2.0 s" in out and "4.0x sooner than full (8.0 s)" in out
    assert "digits: rs2 did not reach 0.9300" in out
    md = (tmp_path / "report.md").read_text()
    main_table = [line.split(" | ")[:2] for line in md.splitlines() if line.startswith(("| 0_", "| 1_", "| 2_", "| 3_"))]
    assert main_table == [["| 0_d_full", "digits"], ["| 2_d_rs2", "digits"], ["| 1_b_full", "breast_cancer"], ["| 3_b_rs2", "breast_cancer"]], "runs grouped by dataset"


def test_runs_that_did_not_reach_the_target_are_one_table(tmp_path, capsys):
    _write_run(tmp_path / "full", "full", "full", 0, [0.90, 0.95], 10.0, 0.0, 1000)
    for k in range(5):
        _write_run(tmp_path / f"sub{k}", f"rs2_{k}", "rs2", k, [0.5, 0.6 + 0.01 * k], 1.0, 0.0, 100)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not [line for line in out if "did not reach" in line], "no line per run on the console"
    assert [line for line in out if "reached" in line] == ["selectkit-report: digits: none of the 5 subset runs reached 0.9300 (full data's final accuracy minus 2 points)."]
    md = (tmp_path / "report.md").read_text()
    assert "did not reach" not in md
    section = md.split("## Time to full data's accuracy", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| digits | sub")]
    assert len(rows) == 5 and all(r.endswith("| rs2 | 0.9300 | not reached in 2 epochs | full reached it after 20.0 s |") for r in rows)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _many_strategies(root: Path, count: int = 39) -> None:
    """``count`` runs of one selector, each with other settings (so ``count`` legend entries with
    long names), beside one full-data run."""
    _write_run(root / "0", "full", "full", 0, [0.6, 0.7, 0.8], 10.0, 0.0, 1000)
    for k in range(1, count):
        settings = (f"selector.fraction={0.01 * k:.2f}", f"optim.lr={0.001 * k:.3f}", f"data.batch_size={16 * k}", "selector.class_balanced=true")
        _write_run(root / str(k), "rs2", "rs2", 0, [0.5 + 0.005 * k, 0.6 + 0.004 * k, 0.7 + 0.002 * k], 1.0 + 0.1 * k, 0.05, 100, overrides=settings)


def _check_layout(fig, png: Path) -> None:
    """Every legend lies beside its axes (covering no curve), and the PNG holds every artist."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.x0 >= area.x1, "the legend is beside the axes, not on them"
    tight = fig.get_tightbbox(renderer)
    width, height = _png_size(png)
    assert width >= tight.width * fig.dpi - 1 and height >= tight.height * fig.dpi - 1, "nothing is cropped"


def test_many_strategies_legend_beside_the_plot_nothing_cropped_no_warning(tmp_path):
    import warnings

    from selectkit.report import runs_figure

    _many_strategies(tmp_path / "runs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    runs = load_runs([tmp_path / "runs"])
    fig = runs_figure(runs, "wallclock", [0.8, 0.85], {"digits": 0.78})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert len(labels) == 39 + 2 and len(set(labels)) == len(labels), "one distinct entry per strategy, the targets and full data's"
    assert any("selector.fraction=0.05" in label for label in labels), "runs of one selector are told apart by their settings"
    _check_layout(fig, tmp_path / "rep" / "acc_vs_wallclock.png")


def test_many_label_curves_beside_the_plot_nothing_cropped_no_warning(tmp_path):
    import warnings

    from selectkit.report import labels_figure, plot_labels

    curves = [{"strategy": f"least_confidence [rounds.budget={10 * k} optim.lr={0.001 * k:.3f} rounds.min_steps={50 * k}]", "dataset": "digits", "seeds": [0],
               "runs": [str(k)], "labels": [10, 20, 40], "mean": [0.3, 0.4 + 0.001 * k, 0.5], "std": [0.0] * 3, "min": [0.3] * 3, "max": [0.5] * 3, "n": [1] * 3}
              for k in range(39)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_labels(curves, tmp_path / "labels.png")
    _check_layout(labels_figure(curves), tmp_path / "labels.png")
