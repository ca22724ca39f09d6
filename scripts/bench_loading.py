"""Batch loading on Fashion-MNIST, side by side in one run: `Batches` against a default item-by-item
DataLoader, memory-mapped `Arrays` against in-memory ones, the `TorchDataset` adapter against a plain
DataLoader over the same Dataset (batch 256; a random 10% subset and the full training set).

    python scripts/bench_loading.py [--rounds 5] [--batch-size 256] [--workers 0 2] [--out outputs/bench_loading]

Writes ``<out>/bench_loading.md`` (the table for docs/benchmarks.md) and ``<out>/bench_loading.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from selectkit.data import load_fashion_mnist
from benchlib.loading import markdown, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="timed epochs per loader (fastest kept), after one warm-up")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers of the adapter comparison")
    ap.add_argument("--data-dir", default=None, help="where Fashion-MNIST is looked for first")
    ap.add_argument("--tmp-dir", default=None, help="where the .npy copy for the memory-mapped runs is written")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/bench_loading")
    args = ap.parse_args()

    x, y = load_fashion_mnist(args.data_dir, normalize=True)["train"]
    result = run(x, y, batch_size=args.batch_size, rounds=args.rounds, workers=args.workers, seed=args.seed, tmp_dir=args.tmp_dir)
    table = markdown(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    (out / "bench_loading.md").write_text(f"{host}\n\n{table}\n")
    (out / "bench_loading.json").write_text(json.dumps({"host": host, "args": vars(args), **result}, indent=2))
    print(host)
    print(table)


if __name__ == "__main__":
    main()
