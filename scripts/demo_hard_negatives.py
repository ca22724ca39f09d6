"""Hard-negative demos: run the ``hardneg_fmnist_*`` and ``retrieval_wordnet*`` experiments and write a
comparison table (final retrieval recall@k and MRR, training and selection time).

    python scripts/demo_hard_negatives.py                    # both demos, outputs under outputs/demo_hard_negatives
    python scripts/demo_hard_negatives.py --only fmnist      # Fashion-MNIST: random, in-batch (batch-hard, semi-hard), static, dynamic (per epoch, per 5 steps), hcl
    python scripts/demo_hard_negatives.py --only wordnet     # WordNet: before (pretrained), in-batch, mined

Every run is a plain ``selectkit-train experiment=<name>`` in its own process (CPU, one thread by
default: on a shared machine one thread per run is faster than two contending ones). Each table starts
with the network before training (the initial CNN; the pretrained encoder), scored by the
contrastive task's own validation code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

FMNIST = ["hardneg_fmnist_random", "hardneg_fmnist_inbatch", "hardneg_fmnist_semihard", "hardneg_fmnist_static", "hardneg_fmnist_dynamic", "hardneg_fmnist_steps", "hardneg_fmnist_hcl"]
WORDNET = ["retrieval_wordnet", "retrieval_wordnet_hardneg"]
COMMON = ["logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false", "checkpoint=false"]
METRICS = ["val_recall@1", "val_recall@5", "val_recall@10", "val_mrr"]


def train(name: str, out: Path, threads: int, extra: list[str]) -> dict:
    """Run ``experiment=name`` in a fresh process; its last metrics row, times and wall-clock."""
    run_dir = out / name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "selectkit.train", f"experiment={name}", *COMMON, f"hydra.run.dir={run_dir}", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
        return {"run": f"{name} (failed, exit {done.returncode})", **{k: float("nan") for k in METRICS}, "epochs": 0, "train_s": 0.0, "select_s": 0.0, "wall_s": wall}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"run": name, **{k: rows[-1].get(k) for k in METRICS}, "epochs": len(rows), "train_s": summary["train_s"], "select_s": summary["select_s"], "wall_s": wall}


def before(name: str, threads: int, extra: list[str], label: str = "pretrained (before fine-tuning)") -> dict:
    """The untouched network of ``experiment=name`` (initial or pretrained weights) scored by the
    task's own validation code."""
    import lightning.pytorch as pl
    import torch
    from hydra import compose, initialize_config_module

    from selectkit.train import build_module, build_source

    torch.set_num_threads(threads)
    os.environ["HF_HUB_OFFLINE"] = "1"
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", *COMMON, *extra])
    start = time.perf_counter()
    source = build_source(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the initial weights `selectkit-train` starts from
    module = build_module(cfg, source.meta).eval()
    task, val = module.task, source.val
    task.validation_start(module)
    with torch.no_grad():
        for lo in range(0, len(val), 256):
            ids = torch.arange(lo, min(lo + 256, len(val)))
            batch = val.gather(ids)
            batch.update(index=ids, mask=torch.ones(len(ids), dtype=torch.bool), weight=torch.ones(len(ids)))
            task.validation_step(module, batch)
    metrics = task.validation_end(module)
    return {"run": label, **{k: metrics.get(k) for k in METRICS}, "epochs": 0, "train_s": 0.0, "select_s": 0.0, "wall_s": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    """A markdown table of ``rows``."""
    head = "| run | recall@1 | recall@5 | recall@10 | MRR | epochs | train s | select s | wall s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    body = "".join(
        f"| {r['run']} | {r['val_recall@1']:.4f} | {r['val_recall@5']:.4f} | {r['val_recall@10']:.4f} | {r['val_mrr']:.4f} | {r['epochs']} | {r['train_s']:.1f} | {r['select_s']:.1f} | {r['wall_s']:.0f} |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> None:
    """Run the chosen demos and write ``<out>/table.md`` (and ``results.json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["fmnist", "wordnet", "all"], default="all")
    parser.add_argument("--out", type=Path, default=Path("outputs/demo_hard_negatives"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs", nargs="*", default=None, help="a subset of the experiment names")
    parser.add_argument("overrides", nargs="*", help="extra selectkit-train overrides for every run (e.g. seed=1)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = []
    if args.only in ("fmnist", "all"):
        names = [n for n in FMNIST if args.runs is None or n in args.runs]
        rows = [before(FMNIST[0], args.threads, args.overrides, "untrained network (seed's initial weights)")]
        rows += [train(n, args.out, args.threads, args.overrides) for n in names]
        sections.append(("Fashion-MNIST embedding learning", rows))
    if args.only in ("wordnet", "all"):
        names = [n for n in WORDNET if args.runs is None or n in args.runs]
        rows = [before(WORDNET[0], args.threads, args.overrides)] + [train(n, args.out, args.threads, args.overrides) for n in names]
        sections.append(("WordNet text retrieval (definitions retrieve their word)", rows))
    text = "".join(f"### {title}\n\n{table(rows)}\n" for title, rows in sections)
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps({title: rows for title, rows in sections}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
