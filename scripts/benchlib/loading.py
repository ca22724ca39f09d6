"""Batch-loading benchmark: epochs through `Batches` against the DataLoaders people use by default.

Three comparisons, each measured side by side in one process, rounds interleaved, on the same ids in
the same order (a random 10% subset and the full set, batch 256; a round of the subset runs its
epoch ten times, so every round moves as many rows as a full epoch; the fastest round is kept):

- batch gathering (`Batches` over an `ArrayDataset`) against a default item-by-item DataLoader over
  a ``TensorDataset`` of the same tensors;
- memory-mapped `Arrays` (``mmap: true``) against the same file loaded into memory;
- the `TorchItems` adapter against a plain DataLoader over the same torch Dataset, with the same
  number of workers.

`scripts/bench_loading.py` runs it and prints a Markdown table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from selectkit.data.arrays import Arrays
from selectkit.data.batches import Batches, batch_collate
from selectkit.data.memory import ArrayDataset
from selectkit.data.torch_dataset import TorchItems


def epoch_seconds(loader: Iterable, epochs: int = 1) -> float:
    """Seconds per epoch over ``epochs`` passes through ``loader``, touching every batch's inputs."""
    start = time.perf_counter()
    rows = 0
    for _ in range(epochs):
        for batch in loader:
            rows += (batch["x"] if isinstance(batch, dict) else batch[0]).shape[0]
    return (time.perf_counter() - start) / epochs


def compare(loaders: dict[str, Callable[[], Iterable]], rounds: int, epochs: int = 1) -> dict[str, float]:
    """Fastest round (seconds per epoch, ``epochs`` epochs a round) of each loader over ``rounds``
    interleaved rounds, after one warm-up epoch each."""
    built = {name: make() for name, make in loaders.items()}
    for loader in built.values():
        epoch_seconds(loader)
    best = {name: float("inf") for name in built}
    for _ in range(rounds):
        for name, loader in built.items():
            best[name] = min(best[name], epoch_seconds(loader, epochs))
    return best


def copy_seconds(x: np.ndarray, rounds: int) -> float:
    """Fastest of ``rounds`` contiguous copies of all of ``x``: the memory-bandwidth floor of an epoch."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        x.copy()
        best = min(best, time.perf_counter() - start)
    return best


def run(x: np.ndarray, y: np.ndarray, batch_size: int = 256, rounds: int = 5, workers: Iterable[int] = (0, 2), seed: int = 0, tmp_dir: str | None = None) -> dict[str, Any]:
    """All comparisons on ``x`` (float32 ``[N, ...]``) and ``y``: ``{"rows": [one per comparison and
    subset], "copy_s": seconds of one contiguous copy of x}``."""
    rng = np.random.default_rng([seed, 0x10AD])
    perm = rng.permutation(x.shape[0])
    subsets = {"10%": perm[: x.shape[0] // 10].tolist(), "full": perm.tolist()}
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))
    plain = TensorDataset(xt, yt)
    rows: list[dict[str, Any]] = []

    def loader(dataset: Any, ids: list[int], ours: bool, num_workers: int = 0) -> Callable[[], DataLoader]:
        extra = {"collate_fn": batch_collate} if ours else {}
        return lambda: DataLoader(dataset, batch_size=batch_size, sampler=ids, num_workers=num_workers, persistent_workers=num_workers > 0, **extra)

    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        np.save(Path(tmp) / "x.npy", xt.numpy())
        np.save(Path(tmp) / "y.npy", yt.numpy())
        mapped, memory = (Arrays({"x": str(Path(tmp) / "x.npy"), "y": str(Path(tmp) / "y.npy")}, mmap=m) for m in (True, False))
        mapped.setup()
        memory.setup()
        for subset, ids in subsets.items():
            # a round of the small subset runs as many rows as one full epoch
            n = max(1, x.shape[0] // len(ids))
            t = compare({"item": loader(plain, ids, False), "batch": loader(Batches(ArrayDataset(xt, yt)), ids, True)}, rounds)
            rows.append({"comparison": "batch gathering vs item-by-item TensorDataset", "subset": subset, "workers": 0, "rows": len(ids), "peer_s": t["item"], "ours_s": t["batch"], "ratio": t["item"] / t["batch"], "goal": "speed-up >= 10", "met": t["item"] / t["batch"] >= 10})
            t = compare({"memory": loader(Batches(memory.train), ids, True), "mapped": loader(Batches(mapped.train), ids, True)}, rounds, n)
            rows.append({"comparison": "memory-mapped Arrays vs in-memory Arrays", "subset": subset, "workers": 0, "rows": len(ids), "peer_s": t["memory"], "ours_s": t["mapped"], "ratio": t["mapped"] / t["memory"], "goal": "time ratio <= 2", "met": t["mapped"] / t["memory"] <= 2})
            for w in workers:
                t = compare({"plain": loader(plain, ids, False, w), "adapter": loader(Batches(TorchItems(plain)), ids, True, w)}, rounds, n)
                rows.append({"comparison": "TorchDataset adapter vs plain DataLoader", "subset": subset, "workers": w, "rows": len(ids), "peer_s": t["plain"], "ours_s": t["adapter"], "ratio": t["adapter"] / t["plain"], "goal": "time ratio <= 1.10", "met": t["adapter"] / t["plain"] <= 1.10})
    return {"rows": rows, "copy_s": copy_seconds(xt.numpy(), rounds)}


def markdown(result: dict[str, Any]) -> str:
    """The result rows as a Markdown table (seconds per epoch, rows per second, ratio against the goal).

    The ratio is a speed-up (peer time / our time) for batch gathering and a time ratio (our time /
    peer time) for the other two comparisons, as the goal column says.
    """
    rows = result["rows"]
    lines = [
        "| comparison | subset | workers | peer s/epoch | ours s/epoch | peer rows/s | ours rows/s | ratio | goal | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['comparison']} | {r['subset']} | {r['workers']} | {r['peer_s']:.4f} | {r['ours_s']:.4f} | "
            f"{r['rows'] / r['peer_s']:,.0f} | {r['rows'] / r['ours_s']:,.0f} | {r['ratio']:.2f} | {r['goal']} | {'yes' if r['met'] else 'no'} |"
        )
    full = next((r for r in rows if r["subset"] == "full"), None)
    if full is not None:
        lines += ["", f"One contiguous copy of the whole training set (the memory-bandwidth floor of a full epoch): {result['copy_s']:.4f} s."]
    return "\n".join(lines)
