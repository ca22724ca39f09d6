"""Samplers that feed each epoch's selection to PyTorch Lightning, identically on every rank.

* `SelectionSampler` (a `DistributedSampler`, so Lightning never wraps it again): at ``set_epoch(e)`` it
  asks its source for epoch ``e``'s selection (computed identically on every rank from seed and epoch,
  never rank), shuffles it with a generator of (seed, epoch) and yields this rank's disjoint shard.
  Selections may change size from one epoch to the next; ``len()`` follows the current epoch.
* `TupleBatchSampler` (a batch sampler): each epoch's tuples, shuffled as whole tuples, sharded over
  ranks as whole tuples, and packed into batches that never split a tuple.
* `ShardSampler`: a plain disjoint strided shard, for validation under DDP.

Shards are padded to equal length so every rank runs the same number of steps. Padding rows are marked
by a mask of their own (``live = 0``), never by a weight: items are plain ints when the epoch has no
weights and no padding, else ``(index, weight, live)`` triples; `selectkit.data.Batches` turns them into
a batch's ``index``, ``weight`` and ``mask`` tensors with one gather.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from selectkit.errors import ConfigError

_ORDER = 0x4F52


class EpochSource(Protocol):
    """What the samplers need from their owner (the `SelectionController`)."""

    seed: int
    random_order: bool

    def selection(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]: ...

    def tuples(self, epoch: int) -> np.ndarray: ...


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


def _layout(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    world, my_rank = world_and_rank()
    return (world if num_replicas is None else num_replicas), (my_rank if rank is None else rank)


def pad_and_shard(n: int, world: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``0..n-1`` padded (by repeating from the start) to a multiple of ``world``, this rank's
    strided share of them, and the share's live mask (False on padding)."""
    per = math.ceil(n / world) if n else 0
    total = per * world
    positions = np.resize(np.arange(n, dtype=np.int64), total) if n else np.zeros(0, dtype=np.int64)
    live = np.arange(total) < n
    return positions[rank:total:world], live[rank:total:world]


def _items(ids: np.ndarray, weights: np.ndarray, live: np.ndarray) -> list:
    if live.all() and np.all(weights == 1.0):
        return ids.tolist()
    return list(zip(ids.tolist(), weights.tolist(), live.astype(np.int8).tolist()))


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
        num_replicas, rank = _layout(num_replicas, rank)
        super().__init__(_Sized(1), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=source.seed)
        self.source = source
        self.record_dir = record_dir
        self.sampler = _EpochRelay(self)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch: the selection is computed (or reused) now."""
        self.epoch = epoch
        self.source.selection(epoch)

    def __len__(self) -> int:
        ids, _ = self.source.selection(self.epoch)
        return math.ceil(ids.shape[0] / self.num_replicas)

    def shard(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's ``(ids, weights, live)`` for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        ids, weights = self.source.selection(epoch)
        w = np.ones(ids.shape[0], dtype=np.float32) if weights is None else weights.astype(np.float32, copy=False)
        if self.shuffle and not getattr(self.source, "random_order", False):
            order = np.random.default_rng([self.seed, epoch, _ORDER]).permutation(ids.shape[0])
            ids, w = ids[order], w[order]
        positions, live = pad_and_shard(ids.shape[0], self.num_replicas, self.rank)
        return ids[positions], w[positions], live

    def __iter__(self) -> Iterator:
        ids, w, live = self.shard()
        if self.record_dir is not None:
            folder = Path(self.record_dir)
            folder.mkdir(parents=True, exist_ok=True)
            np.savez(folder / f"epoch_{self.epoch:04d}_rank_{self.rank}.npz", indices=ids, weights=w, live=live)
        return iter(_items(ids, w, live))


class _EpochRelay:
    """A batch sampler's ``sampler`` as Lightning sees it: Lightning calls ``set_epoch`` on a loader's
    ``sampler`` and its ``batch_sampler.sampler``, never on the batch sampler itself; this passes it on."""

    def __init__(self, owner: "TupleBatchSampler") -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class TupleBatchSampler(Sampler):
    """Batches of whole tuples: each epoch's ``[t, s]`` tuples shuffled, sharded and packed whole.

    A batch holds ``batch_size // s`` tuples, their items in tuple order (anchor, positive, negatives);
    ranks get disjoint sets of whole tuples, padded with repeated tuples marked not live so every rank
    runs the same number of steps.

    Args:
        source: gives each epoch's tuples as a ``[t, s]`` int64 array of global ids.
        batch_size: items per batch (``data.batch_size``); at least one tuple must fit.
        num_replicas, rank, shuffle, seed: as for `SelectionSampler`.
        record_dir: when set, each rank writes its ``tuples`` and ``live`` of every epoch there.
    """

    def __init__(self, source: EpochSource, batch_size: int, *, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True, record_dir: str | None = None) -> None:
        self.source = source
        self.record_dir = record_dir
        self.sampler = _EpochRelay(self)
        self.batch_size = int(batch_size)
        self.num_replicas, self.rank = _layout(num_replicas, rank)
        self.shuffle = shuffle
        self.seed = source.seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = epoch
        self.source.tuples(epoch)

    @property
    def tuple_size(self) -> int:
        """Items per tuple in the current epoch."""
        return int(self.source.tuples(self.epoch).shape[1])

    def _per_batch(self, s: int) -> int:
        per = self.batch_size // s
        if per < 1:
            raise ConfigError(f"data.batch_size={self.batch_size} is smaller than one tuple ({s} items); raise data.batch_size or ask for fewer negatives")
        return per

    def shard(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This rank's ``([t_r, s] tuples, [t_r] live)`` for ``epoch``."""
        epoch = self.epoch if epoch is None else epoch
        tuples = self.source.tuples(epoch)
        if self.shuffle:
            tuples = tuples[np.random.default_rng([self.seed, epoch, _ORDER]).permutation(tuples.shape[0])]
        positions, live = pad_and_shard(tuples.shape[0], self.num_replicas, self.rank)
        return tuples[positions], live

    def __len__(self) -> int:
        tuples = self.source.tuples(self.epoch)
        per_rank = math.ceil(tuples.shape[0] / self.num_replicas)
        return math.ceil(per_rank / self._per_batch(tuples.shape[1]))

    def __iter__(self) -> Iterator[list]:
        tuples, live = self.shard()
        if self.record_dir is not None:
            folder = Path(self.record_dir)
            folder.mkdir(parents=True, exist_ok=True)
            np.savez(folder / f"epoch_{self.epoch:04d}_rank_{self.rank}.npz", tuples=tuples, live=live)
        s = tuples.shape[1]
        per = self._per_batch(s)
        for start in range(0, tuples.shape[0], per):
            block = tuples[start : start + per]
            alive = np.repeat(live[start : start + per], s)
            yield _items(block.reshape(-1), np.ones(block.size, dtype=np.float32), alive)


class ShardSampler(Sampler):
    """Rows ``rank, rank + world, ...`` of ``n``: disjoint validation shards without padding."""

    def __init__(self, n: int, *, num_replicas: int | None = None, rank: int | None = None) -> None:
        self.n = int(n)
        self.num_replicas, self.rank = _layout(num_replicas, rank)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))
