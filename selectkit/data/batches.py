"""The batch view a DataLoader reads: sampler items in, one `BatchDataset.gather` call per batch out.

PyTorch's DataLoader hands a map-style dataset that defines ``__getitems__`` the sampler's items of
one batch at once and passes the result to ``collate_fn``; `Batches` turns those items into ids,
weights and a padding mask (`split_items`), gathers the rows with one call and returns them as a dict;
`batch_collate` leaves that dict as it is.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from selectkit.data.base import BatchDataset
from selectkit.errors import ConfigError


def split_items(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampler items -> (ids int64, weight float32, mask bool). Items are plain ints (weight 1, mask True)
    or (id, weight, live) triples where live is 1/0 (padding rows carry live=0). Fast path for ints.

    ``(id, weight)`` pairs are read as live rows; a 1-D integer tensor or array is a batch of ids.
    """
    n = len(items)
    if isinstance(items, (torch.Tensor, np.ndarray)) and items.ndim == 1:
        idx = torch.as_tensor(items).to(torch.int64)
        return idx, torch.ones(n, dtype=torch.float32), torch.ones(n, dtype=torch.bool)
    if n and isinstance(items[0], (tuple, list)):
        width = len(items[0])
        if width not in (2, 3):
            raise ConfigError(f"sampler items must be ids or (id, weight, live) triples, got {items[0]!r}")
        rows = np.asarray(items, dtype=np.float64).reshape(n, width)
        idx = torch.from_numpy(rows[:, 0].astype(np.int64))
        weight = torch.from_numpy(rows[:, 1].astype(np.float32))
        mask = torch.from_numpy(rows[:, 2] != 0) if width == 3 else torch.ones(n, dtype=torch.bool)
        return idx, weight, mask
    idx = torch.from_numpy(np.fromiter(items, dtype=np.int64, count=n))
    return idx, torch.ones(n, dtype=torch.float32), torch.ones(n, dtype=torch.bool)


class Batches(Dataset):
    """Wraps a BatchDataset for a DataLoader: __getitems__(items) -> dataset.gather(ids) plus
    "index" (int64), "weight" (float32), "mask" (bool); __len__ = len(dataset). Picklable (workers).

    ``index``, ``weight`` and ``mask`` follow ``x`` onto its device (a dataset moved with
    `BatchDataset.to`). ``__getitem__(i)`` returns one row as the same dict without the batch axis.
    """

    def __init__(self, dataset: BatchDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        idx, weight, mask = split_items(items)
        batch = self.dataset.gather(idx)
        device = batch["x"].device
        if device.type != "cpu":
            idx, weight, mask = idx.to(device), weight.to(device), mask.to(device)
        batch["index"], batch["weight"], batch["mask"] = idx, weight, mask
        return WorkerBatch(batch) if get_worker_info() is not None else batch

    def __getitem__(self, i: Any) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


#: Tensors up to this size travel from DataLoader workers by value, larger ones through shared memory.
BY_VALUE_BYTES = 64 << 10


class WorkerBatch(dict):
    """A batch made in a DataLoader worker: its small CPU tensors (ids, weights, mask, labels) are
    pickled by value, because sending each tensor through shared memory costs a file descriptor
    hand-over per tensor; the main process receives a plain dict of tensors."""

    def __reduce__(self) -> tuple:
        small = {k: v.numpy() for k, v in self.items() if isinstance(v, torch.Tensor) and v.device.type == "cpu" and v.nbytes <= BY_VALUE_BYTES}
        return _rebuild_batch, (list(self), {k: v for k, v in self.items() if k not in small}, small)


def _rebuild_batch(keys: list, shared: dict, small: dict) -> dict:
    return {k: shared[k] if k in shared else torch.from_numpy(small[k]) for k in keys}


def batch_collate(batch: Any) -> Any:
    """The DataLoader ``collate_fn`` for `Batches`: the batch from ``__getitems__``, unchanged."""
    return batch
