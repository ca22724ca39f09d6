"""RS2 on Fashion-MNIST, side by side in one run: full data, RS2 10% (without replacement), a static
random 10%, and full data compressed to RS2's step budget; plus resampling and loader throughput.

    python scripts/bench_rs2.py [--epochs 20] [--full-epochs 10] [--fraction 0.1] [--out outputs/bench_rs2]

Writes ``<out>/bench_rs2.md`` (a section ready for docs/benchmarks.md) and ``<out>/bench_rs2.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from benchlib.rs2 import accuracy_at_budget, loader_throughput, time_resampling
from selectkit.data import build_datasets
from selectkit.report import load_run, reach_sentence, speedups, summarize, time_to_target
from selectkit.train import run


def _cfg(out: Path, overrides: list[str]):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={out}", "logger=none", "trainer.progress_bar=false", "checkpoint=false", *overrides])


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20, help="epochs of the subset methods")
    ap.add_argument("--full-epochs", type=int, default=10, help="epochs of full-data training")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_rs2"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(torch.get_num_threads())

    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
    results["resample_10M"] = time_resampling(10_000_000, args.fraction, epochs=12)
    results["resample_10M_full_walk"] = time_resampling(10_000_000, 1.0, epochs=3)
    train_ds, _, _ = build_datasets(name="fashion_mnist", data_dir="data", val_fraction=0.0, seed=args.seed, normalize=True, imbalance=None)
    results["loader"] = loader_throughput(train_ds.x, train_ds.y, batch_size=256)

    common = [f"seed={args.seed}", "data=fashion_mnist", "model=cnn"]
    batch = 256
    n = len(train_ds)
    rs2_steps = args.epochs * math.ceil(math.ceil(args.fraction * n) / batch)
    methods = {
        "full": common + ["selector=full", f"trainer.max_epochs={args.full_epochs}"],
        "rs2": common + ["selector=rs2", f"selector.fraction={args.fraction}", f"trainer.max_epochs={args.epochs}"],
        "random_static": common + ["selector=random", f"selector.fraction={args.fraction}", f"trainer.max_epochs={args.epochs}"],
        "full_compressed": common + ["selector=full", f"trainer.max_epochs={args.full_epochs}", f"trainer.max_steps={rs2_steps}"],
    }
    runs = {}
    for name, overrides in methods.items():
        run_dir = args.out / name
        summary = run(_cfg(args.out, overrides + [f"run_name={name}"]), run_dir)
        runs[name] = {"summary": summary, "rows": _rows(run_dir), "run": load_run(run_dir)}
        print(f"{name}: final val_acc={summary['final']['val_acc']:.4f} train_s={summary['train_s']:.1f} select_s={summary['select_s']:.3f}", flush=True)

    full_rows = runs["full"]["rows"]
    full_final = full_rows[-1]["val_acc"]
    threshold = full_final - 0.02
    full_total = full_rows[-1]["train_s"] + full_rows[-1]["select_s"]
    reach = {k: time_to_target(v["run"], threshold) for k, v in runs.items()}
    budgets = sorted({round(full_total * f, 1) for f in (0.05, 0.1, 0.2, 0.5, 1.0)})
    results.update(
        {
            "threshold": threshold,
            "full_final": full_final,
            "full_total_s": full_total,
            "reach": reach,
            "budgets": budgets,
            "acc_at_budget": {k: [accuracy_at_budget(v["rows"], b) for b in budgets] for k, v in runs.items()},
            "overhead": {k: v["summary"]["select_s"] / max(v["summary"]["train_s"], 1e-9) for k, v in runs.items()},
            "final": {k: v["rows"][-1] for k, v in runs.items()},
        }
    )
    loaded = [v["run"] for v in runs.values()]
    results["in_words"] = [reach_sentence(r) for r in speedups(loaded, summarize(loaded))]
    (args.out / "bench_rs2.json").write_text(json.dumps(results, indent=2, default=float))
    (args.out / "bench_rs2.md").write_text(render(results, args))
    print((args.out / "bench_rs2.md").read_text())


def _fmt(x, spec=".4f"):
    return "—" if x is None else format(x, spec)


def render(r: dict, args) -> str:
    """Markdown section with every figure of the run."""
    lines = [
        f"Machine: {r['machine']}. Command: `python scripts/bench_rs2.py --epochs {args.epochs} --full-epochs {args.full_epochs} --fraction {args.fraction} --seed {args.seed}`.",
        "",
        f"Full data reaches val_acc {r['full_final']:.4f} after {args.full_epochs} epochs ({r['full_total_s']:.1f} s of training + selection). "
        f"Threshold = full final − 2 points = {r['threshold']:.4f}.",
        "",
        *r.get("in_words", []),
        "",
        "| method | epochs | examples seen | train_s | select_s | overhead | final val_acc | time to threshold (s) | speed-up vs full |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    full_hit = r["reach"]["full"]
    for k, row in r["final"].items():
        hit = r["reach"][k]
        speed = (full_hit["wall_s"] / hit["wall_s"]) if hit and full_hit else None
        lines.append(
            f"| {k} | {row['epoch'] + 1} | {row['examples_seen']} | {row['train_s']:.1f} | {row['select_s']:.3f} | "
            f"{100 * r['overhead'][k]:.2f}% | {row['val_acc']:.4f} | {_fmt(hit and hit['wall_s'], '.1f')} | {_fmt(speed, '.1f')}x |"
        )
    lines += ["", "Validation accuracy at equal wall-clock budgets (training + selection seconds):", ""]
    lines.append("| method | " + " | ".join(f"{b:g} s" for b in r["budgets"]) + " |")
    lines.append("| --- |" + " --- |" * len(r["budgets"]))
    for k, accs in r["acc_at_budget"].items():
        lines.append(f"| {k} | " + " | ".join(_fmt(a) for a in accs) + " |")
    rs, rf, ld = r["resample_10M"], r["resample_10M_full_walk"], r["loader"]
    lines += [
        "",
        f"Resampling a pool of 10,000,000 (RS2 without replacement, fraction {args.fraction}, {rs['selected']:,} per epoch): "
        f"mean {rs['mean_s'] * 1e3:.1f} ms per epoch, worst {rs['max_s'] * 1e3:.1f} ms (a new permutation each cycle). "
        f"Fraction 1.0 (a fresh 10M permutation every epoch): mean {rf['mean_s'] * 1e3:.1f} ms.",
        "",
        f"Batch loading (Fashion-MNIST, batch 256): default item-by-item DataLoader {ld['item_by_item_per_s']:,.0f} samples/s, "
        f"selectkit batch gathering {ld['batched_per_s']:,.0f} samples/s: {ld['speedup']:.1f}x.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
