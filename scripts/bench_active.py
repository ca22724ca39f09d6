"""Active learning on Fashion-MNIST: accuracy against labels for every acquisition strategy, several
seeds, labels from 10 to 2,000 on a growing per-round schedule; and pool-scoring throughput against
plain inference on the same batches.

    python scripts/bench_active.py [--pool 10000] [--seeds 0 1 2] [--epochs 20] [--batch-size 32] [--min-steps 200]
        [--strategies random entropy power_entropy bald power_bald kcenter badge typiclust typiclust_embeddings]
        [--out outputs/bench_active]

Each run is one round loop (``selectkit.train.run``, an MLP trained afresh every round on the labelled
items, validated on the 10,000 test images); a run whose ``summary.json`` exists is not run again, so
the script can be stopped and restarted (``--report-only`` collects what finished). Writes ``<out>/bench_active.md`` (a section for
docs/benchmarks.md), ``<out>/bench_active.json`` and, through ``selectkit-report``,
``<out>/report/acc_vs_labels.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from benchlib.active import STRATEGIES, compose, overrides, scoring_throughput, write_pool
from selectkit.report import label_curves, load_runs
from selectkit.report import main as report_main
from selectkit.train import run

SCHEDULE = [10, 30, 50, 100, 300, 500, 1000, 1000]  # labels 10 -> 20, 50, 100, 200, 500, 1000, 2000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=10000, help="training images in the pool (0: all 60,000)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20, help="training epochs per round")
    ap.add_argument("--batch-size", type=int, default=32, help="training batch size")
    ap.add_argument("--min-steps", type=int, default=200, help="rounds.min_steps: optimizer steps a round trains at least (0: epochs only)")
    ap.add_argument("--initial", type=int, default=10, help="labels before round 0")
    ap.add_argument("--total", type=int, default=2000, help="rounds.total_budget")
    ap.add_argument("--strategies", nargs="+", default=["random", "entropy", "power_entropy", "bald", "power_bald", "kcenter", "badge", "typiclust", "typiclust_embeddings"], choices=sorted(STRATEGIES))
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="run nothing new: collect the finished runs (and measure throughput)")
    ap.add_argument("--out", default="outputs/bench_active")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    train, val = write_pool(out / "data", args.pool)
    result: dict = {"pool": args.pool or 60000, "seeds": args.seeds, "epochs": args.epochs, "batch_size": args.batch_size, "min_steps": args.min_steps, "schedule": SCHEDULE, "total": args.total,
                    "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(), "runs": {}, "failed": {}}
    for name in args.strategies:
        for seed in args.seeds:
            run_dir = out / "runs" / name / f"seed_{seed}"
            key = f"{name}/seed_{seed}"
            if (run_dir / "summary.json").exists():
                result["runs"][key] = json.loads((run_dir / "summary.json").read_text())["select_s"]
                continue
            if args.report_only:
                result["failed"][key] = "not run (no time left on the shared machine)"
                continue
            cfg = compose(out, overrides(name, seed, train, val, args.epochs, SCHEDULE, args.total, args.initial, args.batch_size, args.min_steps))
            t = time.perf_counter()
            try:
                summary = run(cfg, run_dir)
            except Exception as err:  # noqa: BLE001 - record it, go on with the other strategies
                result["failed"][key] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                print(f"bench_active: {key} failed: {result['failed'][key]}", file=sys.stderr, flush=True)
                continue
            result["runs"][key] = summary["select_s"]
            print(f"bench_active: {key} done in {time.perf_counter() - t:.0f} s: " + ", ".join(f"{h['labelled']}:{h['val_acc']:.3f}" for h in summary["rounds"]), flush=True)
    if not args.skip_throughput:
        cfg = compose(out, overrides("random", 0, train, val, args.epochs, SCHEDULE, args.total, args.initial, args.batch_size, args.min_steps))
        result["throughput"] = scoring_throughput(cfg)
        print(f"bench_active: throughput {json.dumps({k: v for k, v in result['throughput'].items() if k != 'seconds'})}", flush=True)
    # runs of strategies not asked for this time (earlier invocations into the same folder) are
    # reported too: read their acquisition seconds from their summaries
    for summary_path in sorted((out / "runs").glob("*/seed_*/summary.json")):
        key = f"{summary_path.parent.parent.name}/{summary_path.parent.name}"
        result["runs"].setdefault(key, json.loads(summary_path.read_text())["select_s"])
    report_main([str(out / "runs"), "--out", str(out / "report")])
    curves = label_curves(load_runs([out / "runs"]))
    result["curves"] = curves
    (out / "bench_active.json").write_text(json.dumps(result, indent=2))
    (out / "bench_active.md").write_text(render(result, curves, out))
    print(f"bench_active: -> {out / 'bench_active.md'}")


def render(result: dict, curves: list[dict], out: Path) -> str:
    """The markdown section: the accuracy table at each label count, the goals and the throughput."""
    counts = sorted({x for c in curves for x in c["labels"]})
    lines = ["| strategy | seeds | " + " | ".join(f"{x:,}" for x in counts) + " | acquisition s per run |", "|---|---|" + "---|" * (len(counts) + 1)]
    for c in curves:
        at = dict(zip(c["labels"], zip(c["mean"], c["std"])))
        name = c["runs"][0].split("/")[0]
        secs = [v for k, v in result["runs"].items() if k.startswith(name + "/")]
        cells = [f"{at[x][0]:.3f} ± {at[x][1]:.3f}" if x in at else "–" for x in counts]
        lines.append(f"| {name} | {len(c['seeds'])} | " + " | ".join(cells) + f" | {sum(secs) / max(len(secs), 1):.1f} |")
    text = "\n".join(lines) + "\n"
    if result.get("failed"):
        text += "\nNot run to the end: " + "; ".join(f"{k}: {v}" for k, v in result["failed"].items()) + "\n"
    tp = result.get("throughput")
    if tp:
        text += (f"\nPool scoring (`probs` of {tp['items']:,} items, batch {tp['batch_size']}, {tp['threads']} threads, median of 5 interleaved): "
                 f"PoolScorer {tp['pool_scorer_items_per_s']:,.0f} items/s, plain torch loop {tp['plain_loop_items_per_s']:,.0f} items/s, "
                 f"ratio {tp['ratio']:.2f} (max abs difference {tp['max_abs_diff']:.1e}).\n")
    return text


if __name__ == "__main__":
    main()
