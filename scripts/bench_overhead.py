"""What Lightning and selectkit cost per epoch: RS2 10% epochs through `selectkit-train` against a plain
PyTorch loop over the very same batches, and RS2's wall-clock per example against full data's.

    python scripts/bench_overhead.py [--epochs 5] [--rounds 2] [--out outputs/bench_overhead]

Side by side in one run, interleaved by round: (a) a plain loop (DataLoader over selectkit's batch
gathering, forward, backward, SGD step) over each epoch's RS2 selection; (b) the same model, optimizer,
batches and epochs through `selectkit.train.run` (Lightning, the sampler, the recorder, checkpointing
off, validation once at the end); (c) one full-data epoch through `run`. Writes ``<out>/bench_overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from torch.utils.data import DataLoader

from selectkit.data import Batches, FashionMNIST, batch_collate
from selectkit.models import SmallCNN
from selectkit.selector import Pool, SelectContext
from selectkit.train import run
from selectkit_plugins.rs2 import RS2


def _cfg(out: Path, overrides: list[str]):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={out}", "logger=none", "trainer.progress_bar=false", "checkpoint=false", "data=fashion_mnist", "model=cnn", "optim=sgd", "optim.scheduler=null", *overrides])


def plain_epochs(source, epochs: int, fraction: float, seed: int) -> list[float]:
    """Seconds per epoch of a plain PyTorch loop over RS2's selections (same batches as selectkit's)."""
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=10, input_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    rs2, batches = RS2(fraction=fraction), Batches(source.train)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        ids = rs2.select(Pool(len(source.train)), SelectContext(seed=seed, epoch=epoch)).indices
        loader = DataLoader(batches, batch_size=256, sampler=ids.tolist(), collate_fn=batch_collate)
        model.train()
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def selectkit_epochs(out: Path, epochs: int, overrides: list[str]) -> list[dict]:
    summary = run(_cfg(out, [f"trainer.max_epochs={epochs}", f"trainer.check_val_every_n_epoch={epochs}", *overrides]), out)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_overhead"))
    args = ap.parse_args()
    source = FashionMNIST(seed=args.seed)
    source.setup()
    plain, lit, full = [], [], []
    for r in range(args.rounds):
        plain += plain_epochs(source, args.epochs, args.fraction, args.seed)[1:]  # first epoch warms up
        rows = selectkit_epochs(args.out / f"rs2_{r}", args.epochs, ["selector=rs2", f"selector.fraction={args.fraction}", f"seed={args.seed}"])
        train = np.diff([0.0] + [row["train_s"] + row["select_s"] for row in rows])
        lit += list(train[1:])
        rows = selectkit_epochs(args.out / f"full_{r}", 1, ["selector=full", f"seed={args.seed}"])
        full.append((rows[-1]["train_s"] + rows[-1]["select_s"]) / rows[-1]["examples_seen"])
        print(f"round {r}: plain {np.median(plain):.3f} s/epoch, selectkit {np.median(lit):.3f} s/epoch", flush=True)
    m = int(np.ceil(args.fraction * len(source.train)))
    p, l = float(np.median(plain)), float(np.median(lit))
    rs2_per_example, full_per_example = l / m, float(np.median(full))
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
        f"Command: `python scripts/bench_overhead.py --epochs {args.epochs} --rounds {args.rounds} --fraction {args.fraction}`.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| plain PyTorch loop, RS2 {args.fraction:g} epoch ({m} examples), median | {p:.3f} s |",
        f"| selectkit-train (Lightning), same epoch, median | {l:.3f} s |",
        f"| per-epoch overhead of Lightning + selectkit | {l - p:+.3f} s ({100 * (l - p) / p:+.1f}% of the epoch) |",
        f"| RS2 wall-clock per example | {1e6 * rs2_per_example:.1f} µs |",
        f"| full data wall-clock per example (one epoch) | {1e6 * full_per_example:.1f} µs |",
        f"| RS2 against full, per example | {100 * (rs2_per_example / full_per_example - 1):+.1f}% |",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
