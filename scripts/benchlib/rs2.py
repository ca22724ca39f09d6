"""Measurement helpers behind ``scripts/bench_rs2.py``: resampling speed, loader throughput, and
time-to-accuracy comparisons of training runs at equal budgets."""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from selectkit.pipeline import Pipeline, Stage
from selectkit.sampler import SelectionSampler


def time_resampling(n: int, fraction: float, epochs: int = 10, seed: int = 0, replacement: bool = False) -> dict[str, float]:
    """Seconds per epoch to draw RS2's subset of a pool of ``n`` (mean, worst, and the first epoch)."""
    from selectkit.control import SelectionController
    from selectkit_plugins.rs2 import RS2

    pipe = Pipeline([Stage(RS2(fraction=fraction, replacement=replacement))], seed=seed)
    controller = SelectionController(pipe, np.zeros(n, dtype=np.int64), lambda ids: np.zeros((len(ids), 1), np.float32))
    sampler = SelectionSampler(controller, num_replicas=1, rank=0)
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        sampler.shard()
        times.append(time.perf_counter() - start)
    return {"mean_s": float(np.mean(times)), "max_s": float(np.max(times)), "first_s": times[0], "selected": int(math.ceil(fraction * n))}


class _ItemOnly(Dataset):
    """The same tensors, fetched one item at a time (what a default map-style dataset does)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def loader_throughput(x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Samples per second over whole epochs (best of ``repeats``) of a default item-by-item
    DataLoader and of selectkit's batch gathering, on the same tensors."""
    from selectkit.control import SelectionController
    from selectkit.data import ArrayDataset, batch_collate
    from selectkit_plugins.full import Full

    def measure(loader: Iterable) -> float:
        best = 0.0
        for _ in range(repeats):
            count, start = 0, time.perf_counter()
            for batch in loader:
                count += (batch["x"] if isinstance(batch, dict) else batch[0]).shape[0]
            best = max(best, count / (time.perf_counter() - start))
        return best

    gen = torch.Generator().manual_seed(seed)
    default = DataLoader(_ItemOnly(x, y), batch_size=batch_size, shuffle=True, generator=gen)
    pipe = Pipeline([Stage(Full(), schedule="once")], seed=seed)
    controller = SelectionController(pipe, y.numpy(), lambda ids: np.zeros((len(ids), 1), np.float32))
    sampler = SelectionSampler(controller, num_replicas=1, rank=0)
    sampler.set_epoch(0)
    ours = DataLoader(ArrayDataset(x, y), batch_size=batch_size, sampler=sampler, collate_fn=batch_collate)
    item = measure(default)
    batched = measure(ours)
    return {"item_by_item_per_s": item, "batched_per_s": batched, "speedup": batched / item}


def accuracy_at_budget(rows: Sequence[dict[str, Any]], budget_s: float) -> float | None:
    """Validation accuracy of the last epoch finished within ``budget_s`` seconds of training+selection."""
    best = None
    for row in rows:
        if row["train_s"] + row["select_s"] <= budget_s:
            best = row.get("val_acc")
    return best
