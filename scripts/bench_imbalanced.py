"""Imbalanced Fashion-MNIST (classes 0, 2, 4 cut to 5%): SMOTE then RS2 against RS2 alone, in one run.

    python scripts/bench_imbalanced.py [--epochs 10] [--seed 0] [--out outputs/bench_imbalanced]

Both runs take about the same number of steps per epoch (see conf/experiment/imbalanced_*.yaml).
Prints a markdown table of minority-class recall, balanced accuracy and accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module

from selectkit.train import run

MINORITY = (0, 2, 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="input", choices=["input", "embedding"], help="SMOTE's space")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_imbalanced"))
    args = ap.parse_args()
    rows = []
    for name in ("imbalanced_rs2", "imbalanced_smote"):
        overrides = [
            f"experiment={name}", f"seed={args.seed}", f"trainer.max_epochs={args.epochs}", "logger=none",
            "checkpoint=false", "trainer.progress_bar=false", f"paths.output_dir={args.out}",
        ]
        if name == "imbalanced_smote":
            overrides.append(f"pipeline.stages.smote.space={args.space}")
        with initialize_config_module("selectkit_conf", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        summary = run(cfg, args.out / name)
        last = summary["final"]
        recall = np.array(last["val_class_recall"])
        rows.append(
            {
                "run": name,
                "pipeline": summary["selector"],
                "train_size": summary["train_size"] + summary["synthetic"],
                "synthetic": summary["synthetic"],
                "minority_recall": float(recall[list(MINORITY)].mean()),
                "balanced_acc": last["val_balanced_acc"],
                "val_acc": last["val_acc"],
                "train_s": summary["train_s"],
                "select_s": summary["select_s"],
            }
        )
    (args.out / "bench_imbalanced.json").write_text(json.dumps(rows, indent=2))
    lines = [
        f"Command: `python scripts/bench_imbalanced.py --epochs {args.epochs} --seed {args.seed} --space {args.space}`.",
        "",
        "| run | pipeline | training set (incl. synthetic) | synthetic | minority recall (0, 2, 4) | balanced acc | accuracy | train_s | select_s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['pipeline']} | {r['train_size']} | {r['synthetic']} | {r['minority_recall']:.4f} | "
            f"{r['balanced_acc']:.4f} | {r['val_acc']:.4f} | {r['train_s']:.1f} | {r['select_s']:.2f} |"
        )
    (args.out / "bench_imbalanced.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
