"""Loss estimates of sensitivity-sampling coresets against uniform samples, on a trained
Fashion-MNIST model's per-sample losses, side by side in one run.

    python scripts/bench_sensitivity.py [--seeds 50] [--epochs 2] [--eps 0.1 0.2] [--k 100] [--out outputs/bench_sensitivity]

Trains selectkit's MLP for ``--epochs`` on the training split (plain Adam loop, nothing cached), takes
every training item's loss and penultimate embedding, then for each ``eps`` and each seed draws
``k + ceil(1/eps^2)`` items with the `sensitivity` selector (several settings) and uniformly, and
records the relative error of the weighted subset loss against the full-data mean loss. Goal: within
``eps`` on at least 90% of seeds. Writes ``<out>/bench_sensitivity.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from benchlib.coresets import fit_fmnist_mlp, loss_estimates, per_sample

VARIANTS = {
    "sensitivity (defaults: loss term, by label, pivotal, squared distance)": {},
    "sensitivity (loss term, by label, pivotal, distance)": {"power": 1},
    "sensitivity (loss term, by label, i.i.d., distance)": {"scheme": "replacement", "power": 1},
    "sensitivity (size term, by label, i.i.d., distance)": {"cluster_term": "size", "scheme": "replacement", "power": 1},
    "sensitivity (loss term, one clustering, i.i.d., distance)": {"by_label": False, "scheme": "replacement", "power": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs of the model whose losses are estimated")
    ap.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_sensitivity"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    fit = fit_fmnist_mlp(epochs=args.epochs)
    losses, embeddings = per_sample(fit["model"], fit["x"], fit["y"])
    labels = fit["y"].numpy()
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "val_acc": fit["val_acc"],
        "fit_s": fit["fit_s"],
        "mean_loss": float(losses.mean()),
        "loss_cv": float(losses.std() / losses.mean()),
        "runs": [],
    }
    for eps in args.eps:
        results["runs"].append(
            loss_estimates(embeddings, losses, eps=eps, k=args.k, seeds=range(args.seeds), variants=VARIANTS, labels=labels)
        )
        print(f"eps={eps} done ({time.perf_counter() - start:.0f} s)", flush=True)
    (args.out / "bench_sensitivity.json").write_text(json.dumps(results, indent=2))
    (args.out / "bench_sensitivity.md").write_text(render(results, args))
    print((args.out / "bench_sensitivity.md").read_text())


def render(r: dict, args) -> str:
    """Markdown section with every figure of the run."""
    eps_list = " ".join(f"{e:g}" for e in args.eps)
    lines = [
        f"Machine: {r['machine']}. Command: `python scripts/bench_sensitivity.py --seeds {args.seeds} --epochs {args.epochs} --eps {eps_list} --k {args.k}`.",
        "",
        f"Model: selectkit's MLP after {args.epochs} epochs (test accuracy {r['val_acc']:.4f}); training-set mean loss "
        f"{r['mean_loss']:.4f}, coefficient of variation of the per-sample losses {r['loss_cv']:.2f}.",
        "",
        "| eps | draws (k + 1/eps²) | method | seeds within eps | median rel. error | p90 | max | model evaluations to select | select s (embed / cluster / score) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in r["runs"]:
        for name, v in run["variants"].items():
            c = v["cost_s"]
            cost = f"{c['select_s']:.2f} ({c['embed_s']:.2f} / {c['cluster_s']:.2f} / {c['score_s']:.3f})" if c else "—"
            goal = " ✓" if v["within_eps"] >= 0.9 else ""
            lines.append(
                f"| {run['eps']:g} | {run['draws']} | {name} | {100 * v['within_eps']:.0f}%{goal} | {v['median']:.3f} | {v['p90']:.3f} | {v['max']:.3f} | {v['model_evals']:.0f} | {cost} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
