"""``selectkit-report`` on round loops: accuracy against labels per strategy, seeds grouped into bands,
the table and ``labels.csv``; on run directories as the loop writes them, and on a real loop."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import numpy as np

from selectkit.report import label_curves, load_runs, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_round_run(run_dir: Path, strategy: str, seed: int, accs: dict[int, float], extra: list[str] = ()) -> None:
    """What a round loop leaves in a multirun job folder: overrides, metrics, summary with rounds."""
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [f"rounds.acquire.name={strategy}", f"seed={seed}", *extra]
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    rounds = [{"round": r, "labelled": n, "queried": 5, "val_acc": a, "train_s": 1.0, "select_s": 0.1} for r, (n, a) in enumerate(accs.items())]
    rows = [{"epoch": r, "round": r, "examples_seen": 10 * (r + 1), "train_s": 1.0 * (r + 1), "select_s": 0.1 * (r + 1), "val_acc": h["val_acc"]} for r, h in enumerate(rounds)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    summary = {"status": "completed", "run_name": f"full+{strategy}", "selector": f"full+{strategy}", "strategy": strategy, "seed": seed,
               "rounds": rounds, "labels_used": max(accs) + 5, "final": rounds[-1], "monitor": "val_acc", "train_s": 3.0, "select_s": 0.3, "targets": []}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_seeds_of_one_strategy_become_one_curve_with_their_spread(tmp_path):
    rng = np.random.default_rng(0)
    accs = {s: {n: float(rng.uniform(0.3, 0.9)) for n in (10, 20, 50)} for s in ("margin", "random")}
    job = 0
    data = {}
    for strategy in ("margin", "random"):
        for seed in range(3):
            values = {n: a + 0.01 * seed for n, a in accs[strategy].items()}
            data[(strategy, seed)] = values
            _write_round_run(tmp_path / "multi" / str(job), strategy, seed, values)
            job += 1
    # a run of margin with another setting is another strategy, not a fourth seed
    _write_round_run(tmp_path / "multi" / str(job), "margin", 0, accs["margin"], ["rounds.warm_start=true"])
    curves = label_curves(load_runs([tmp_path / "multi"]))
    assert [c["strategy"] for c in curves] == ["margin", "margin [rounds.warm_start=true]", "random"]
    for c in (curves[0], curves[2]):
        strategy = c["strategy"]
        assert c["labels"] == [10, 20, 50] and c["seeds"] == [0, 1, 2] and c["n"] == [3, 3, 3]
        for k, n in enumerate(c["labels"]):
            values = [data[(strategy, s)][n] for s in range(3)]
            assert abs(c["mean"][k] - statistics.fmean(values)) < 1e-12
            assert abs(c["std"][k] - statistics.pstdev(values)) < 1e-12
            assert c["min"][k] == min(values) and c["max"][k] == max(values)
    assert curves[1]["n"] == [1, 1, 1]


def test_report_writes_the_labels_plot_table_and_csv(tmp_path):
    for job, (strategy, seed) in enumerate([("entropy", 0), ("entropy", 1), ("random", 0), ("random", 1)]):
        _write_round_run(tmp_path / "runs" / str(job), strategy, seed, {10: 0.4 + 0.02 * seed, 30: 0.6 + 0.01 * job, 60: 0.7})
    out = tmp_path / "report"
    assert main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert (out / "acc_vs_labels.png").read_bytes()[:8] == PNG_MAGIC
    text = (out / "report.md").read_text()
    assert "## Accuracy against labels" in text and "| entropy | 2 | 0.4100 ± 0.0100 |" in text
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert [(r["strategy"], int(r["labels"])) for r in rows] == [("entropy", 10), ("entropy", 30), ("entropy", 60), ("random", 10), ("random", 30), ("random", 60)]
    assert float(rows[4]["min_val_acc"]) == 0.62 and float(rows[4]["max_val_acc"]) == 0.63


def test_plain_training_runs_get_no_labels_plot(tmp_path):
    run_dir = tmp_path / "plain"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "examples_seen": 10, "train_s": 1.0, "select_s": 0.0, "val_acc": 0.5}) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "run_name": "full", "selector": "full", "seed": 0}))
    assert main([str(run_dir)]) == 0
    assert not (run_dir / "acc_vs_labels.png").exists() and "Accuracy against labels" not in (run_dir / "report.md").read_text()


def test_a_real_round_loop_over_two_seeds(compose_cfg, tmp_path):
    from selectkit.train import run

    for seed in (0, 1):
        cfg = compose_cfg("rounds=default", "selector=full", "trainer.max_epochs=1", "rounds.initial.size=20", "rounds.budget=[10,20]", "rounds.num_rounds=2", f"seed={seed}")
        run(cfg, tmp_path / "runs" / f"seed_{seed}")
    curves = label_curves(load_runs([tmp_path / "runs"]))
    assert len(curves) == 1 and curves[0]["strategy"] == "least_confidence" and curves[0]["seeds"] == [0, 1]
    assert curves[0]["labels"] == [20, 30, 50] and curves[0]["n"] == [2, 2, 2], "two rounds of acquisition, then the final training"
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "acc_vs_labels.png").stat().st_size > 10_000


def test_many_seeds_share_one_colour_and_legend_entry(tmp_path, recwarn):
    """Sixty round runs (three strategies, twenty seeds): the per-run plots group them by strategy, so
    the legend has three entries and the layout fits (no matplotlib warning)."""
    from selectkit.report import strategy_groups

    job = 0
    for strategy in ("badge", "entropy", "random"):
        for seed in range(20):
            _write_round_run(tmp_path / "runs" / str(job), strategy, seed, {10: 0.4 + 0.001 * seed, 30: 0.6, 60: 0.7})
            job += 1
    runs = load_runs([tmp_path / "runs"])
    groups = strategy_groups(runs)
    assert [label for label, _ in groups] == ["badge", "entropy", "random"]
    assert [len(members) for members in groups.values()] == [20, 20, 20]
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) in (0, None)
    assert (tmp_path / "report" / "acc_vs_wallclock.png").read_bytes()[:8] == PNG_MAGIC
    assert not [w for w in recwarn if "layout" in str(w.message).lower()], [str(w.message) for w in recwarn]
