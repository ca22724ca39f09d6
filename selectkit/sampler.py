"""`SelectionSampler`: the per-epoch selection, as a DistributedSampler that Lightning drives.

Lightning calls ``set_epoch`` on a loader's sampler before every epoch; the sampler asks its source
for that epoch's selection (computed identically on every rank from seed and epoch, never rank),
shuffles it with a generator of (seed, epoch), and yields this rank's disjoint shard. Because it
subclasses `DistributedSampler`, Lightning does not wrap it again under DDP. Shards are padded to equal
length so every rank runs the same number of steps; padding items carry weight 0 and add no loss.

Items are yielded as ``(index, weight)`` pairs when the epoch has weights or padding, else as ints;
the dataset's ``__getitems__`` gathers a whole batch with one indexing operation.
"""

from __future__ import annotations

import math
from typing import Iterator, Protocol

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

_ORDER = 0x4F52


class EpochSource(Protocol):
    """What the sampler needs from its owner: the selection of an epoch and its expected size."""

    seed: int
    random_order: bool

    def selection(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]: ...

    def expected_size(self) -> int: ...


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def world_and_rank() -> tuple[int, int]:
    """(world size, rank) of the default process group, or (1, 0) outside distributed runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class SelectionSampler(DistributedSampler):
    """Yields this rank's shard of the current epoch's selection.

    Args:
        source: computes an epoch's selection (global ids and optional weights).
        num_replicas, rank: the distributed layout; read from the process group when omitted.
        shuffle: shuffle the selection's order each epoch (from seed and epoch).
        record_dir: when set, each rank writes its shard of every epoch there (for audits and tests).
    """

    def __init__(
        self,
        source: EpochSource,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        record_dir: str | None = None,
    ) -> None:
        world, my_rank = world_and_rank()
        num_replicas = world if num_replicas is None else num_replicas
        rank = my_rank if rank is None else rank
        super().__init__(_Sized(max(1, source.expected_size())), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=source.seed)
        self.source = source
        self._size = source.expected_size()
        self.record_dir = record_dir

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch: the selection is computed (or reused) now."""
        self.epoch = epoch
        self.source.selection(epoch)

    def __len__(self) -> int:
        return math.ceil(self._size / self.num_replicas)

    def shard(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This rank's (ids, weights) for ``epoch`` (default: the current one); pads carry weight 0."""
        epoch = self.epoch if epoch is None else epoch
        ids, weights = self.source.selection(epoch)
        if ids.shape[0] != self._size:
            raise RuntimeError(
                f"epoch {epoch} selected {ids.shape[0]} items, the loader was sized for {self._size}; "
                "selections must keep one size per run"
            )
        w = np.ones(ids.shape[0], dtype=np.float32) if weights is None else weights.astype(np.float32, copy=False)
        if self.shuffle and not getattr(self.source, "random_order", False):
            order = np.random.default_rng([self.seed, epoch, _ORDER]).permutation(ids.shape[0])
            ids, w = ids[order], w[order]
        total = len(self) * self.num_replicas
        pad = total - ids.shape[0]
        if pad:
            reps = np.resize(np.arange(ids.shape[0]), pad)
            ids = np.concatenate([ids, ids[reps]])
            w = np.concatenate([w, np.zeros(pad, dtype=np.float32)])
        return ids[self.rank : total : self.num_replicas], w[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator:
        ids, w = self.shard()
        if self.record_dir is not None:
            from pathlib import Path

            folder = Path(self.record_dir)
            folder.mkdir(parents=True, exist_ok=True)
            np.savez(folder / f"epoch_{self.epoch:04d}_rank_{self.rank}.npz", indices=ids, weights=w)
        if np.all(w == 1.0):
            return iter(ids.tolist())
        return iter(zip(ids.tolist(), w.tolist()))
