"""Imbalanced Fashion-MNIST (classes 0, 2, 4 cut to 5%): no SMOTE, SMOTE on the pixels, and SMOTE in
the model's embedding space once the model has trained (``start_epoch``), over several seeds, in one run.

    python scripts/bench_imbalanced.py [--epochs 8] [--seeds 0 1 2] [--model mlp] [--start-epoch 3]
        [--every 2] [--out outputs/bench_imbalanced]

Every variant takes about the same number of steps per epoch (see conf/experiment/imbalanced_*.yaml):
``imbalanced_rs2`` draws 42% of the imbalanced set, the SMOTE variants 30% of the balanced one.
``embedding`` interpolates the embeddings of the model being trained, found at ``--start-epoch`` and
found again every ``--every`` epochs (``0``: once). Prints a markdown table of the cut classes' mean
recall, balanced accuracy and accuracy at the last epoch (mean and spread over the seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module

from selectkit.train import run

MINORITY = (0, 2, 4)


def variants(start_epoch: int, every: int) -> dict[str, list[str]]:
    """The runs compared: their experiment and overrides."""
    late = [f"pipeline.stages.smote.start_epoch={start_epoch}"]
    if every:
        late += ["pipeline.stages.smote.schedule=epoch", f"pipeline.stages.smote.every={every}"]
    return {
        "no SMOTE": ["experiment=imbalanced_rs2"],
        "SMOTE, pixels": ["experiment=imbalanced_smote", "pipeline.stages.smote.space=input"],
        "SMOTE, embeddings": ["experiment=imbalanced_smote", "pipeline.stages.smote.space=embedding", *late],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    ap.add_argument("--start-epoch", type=int, default=3, help="epoch at which embedding-space SMOTE starts")
    ap.add_argument("--every", type=int, default=2, help="refresh embedding-space SMOTE every n epochs (0: once)")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_imbalanced"))
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        for label, extra in variants(args.start_epoch, args.every).items():
            overrides = [
                *extra, f"model={args.model}", f"seed={seed}", f"trainer.max_epochs={args.epochs}", "logger=none",
                "checkpoint=false", "trainer.progress_bar=false", f"paths.output_dir={args.out}",
            ]
            with initialize_config_module("selectkit_conf", version_base="1.3"):
                cfg = compose("train", overrides=overrides)
            slug = label.replace(", ", "_").replace(" ", "_").lower()
            summary = run(cfg, args.out / f"{slug}_seed{seed}")
            last = summary["final"]
            recall = np.array(last["val_class_recall"])
            rows.append(
                {
                    "variant": label, "seed": seed, "pipeline": summary["selector"], "synthetic": summary["synthetic"],
                    "minority_recall": float(recall[list(MINORITY)].mean()), "balanced_acc": last["val_balanced_acc"],
                    "val_acc": last["val_acc"], "train_s": summary["train_s"], "select_s": summary["select_s"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    (args.out / "bench_imbalanced.json").write_text(json.dumps(rows, indent=2))

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}"

    seeds = " ".join(str(s) for s in args.seeds)
    lines = [
        f"Command: `python scripts/bench_imbalanced.py --epochs {args.epochs} --seeds {seeds} --model {args.model} "
        f"--start-epoch {args.start_epoch} --every {args.every}`.",
        "",
        "| variant | pipeline | synthetic | cut classes' recall (0, 2, 4) | balanced acc | accuracy | train_s | select_s |",
        "| --- | --- | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for label in variants(args.start_epoch, args.every):
        rs = [r for r in rows if r["variant"] == label]
        lines.append(
            f"| {label} | {rs[0]['pipeline']} | {rs[0]['synthetic']} | {cell([r['minority_recall'] for r in rs])} | "
            f"{cell([r['balanced_acc'] for r in rs])} | {cell([r['val_acc'] for r in rs])} | "
            f"{np.mean([r['train_s'] for r in rs]):.1f} | {np.mean([r['select_s'] for r in rs]):.2f} |"
        )
    (args.out / "bench_imbalanced.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
