"""In-memory rows: `ArrayDataset` (tensors ``x`` and ``y``) and `WithSynthetic` (any `BatchDataset`
plus synthetic rows appended once, held in memory).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from selectkit.data.base import BatchDataset, flat_rows
from selectkit.errors import ConfigError


def take_rows(t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``t[ids]`` along the first axis, as a new tensor on ``t``'s device.

    On the CPU the rows are copied by numpy's ``take`` in the calling thread (one copy per row):
    ``index_select`` wakes PyTorch's intra-op threads for every batch, which costs more than the
    copy itself when cores are shared. Elsewhere ``index_select`` on the device.
    """
    if t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES and not t.requires_grad:
        a = t.numpy()
        if a.ndim > 2 and a.flags.c_contiguous:
            a = a.reshape(a.shape[0], -1)
        rows = np.take(a, ids.numpy() if ids.device.type == "cpu" else ids.cpu().numpy(), axis=0)
        return torch.from_numpy(rows).view(ids.shape[0], *t.shape[1:])
    return t.index_select(0, ids.to(t.device))


_NUMPY_DTYPES = {torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}


def _check_synthetic(input_shape: tuple[int, ...], x_syn: Any, y_syn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x_syn, y_syn = torch.as_tensor(x_syn), torch.as_tensor(y_syn)
    if tuple(x_syn.shape[1:]) != tuple(input_shape) or y_syn.ndim != 1 or x_syn.shape[0] != y_syn.shape[0]:
        raise ConfigError(
            f"with_synthetic: synthetic rows must be x {('n',) + tuple(input_shape)} and y (n,), got x {tuple(x_syn.shape)} and y {tuple(y_syn.shape)}"
        )
    return x_syn.to(torch.float32), y_syn.to(torch.int64)


class ArrayDataset(BatchDataset, Dataset):
    """Tensors ``x`` (float32) and ``y`` (int64) in memory, fetched a whole batch at a time.

    `gather` is one row copy per tensor (`take_rows`). ``__getitem__(i)`` returns ``(x[i], y[i], i)``
    (``(x[i], i)`` when unlabelled); ``__getitems__(items)`` is ``Batches(self).__getitems__(items)``,
    so the dataset can also be handed to a DataLoader directly.

    Args:
        x: inputs, first dimension = rows; stored as float32.
        y: integer labels, one per row; stored as int64; None for an unlabelled pool.
        n_base: rows that belong to the dataset itself; ids ``>= n_base`` are synthetic rows
            (default: every row is a base row).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None = None, n_base: int | None = None) -> None:
        x = torch.as_tensor(x)
        y = None if y is None else torch.as_tensor(y)
        if x.ndim < 1 or (y is not None and (y.ndim != 1 or x.shape[0] != y.shape[0])):
            raise ConfigError(
                f"ArrayDataset: x and y must have the same number of rows, got x {tuple(x.shape)} and y {None if y is None else tuple(y.shape)}"
            )
        self.x = x if x.dtype == torch.float32 else x.float()
        self.y = y if y is None or y.dtype == torch.int64 else y.long()
        self.n_base = int(x.shape[0] if n_base is None else n_base)
        if not 0 <= self.n_base <= x.shape[0]:
            raise ConfigError(f"ArrayDataset: n_base must be in [0, {x.shape[0]}], got {n_base}")
        self._labels: np.ndarray | None = None

    @property
    def num_synthetic(self) -> int:
        """Synthetic rows appended after the dataset's own rows."""
        return len(self) - self.n_base

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple:
        if self.y is None:
            return self.x[i], int(i)
        return self.x[i], self.y[i], int(i)

    def __getitems__(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """One batch of sampler items (see `split_items`), with ``index``, ``weight`` and ``mask``."""
        from selectkit.data.batches import Batches

        return Batches(self).__getitems__(items)

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        if ids.device != self.x.device:
            ids = ids.to(self.x.device)
        out = {"x": take_rows(self.x, ids)}
        if self.y is not None:
            out["y"] = take_rows(self.y, ids)
        return out

    def labels(self) -> np.ndarray | None:
        if self.y is None:
            return None
        if self._labels is None:
            self._labels = self.y.cpu().numpy()
        return self._labels

    def features(self, ids: np.ndarray) -> np.ndarray:
        idx = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.x.device)
        return flat_rows(take_rows(self.x, idx)).cpu().numpy()

    def to(self, device: Any) -> "ArrayDataset":
        moved = ArrayDataset(self.x.to(device), None if self.y is None else self.y.to(device), n_base=self.n_base)
        moved._labels = self._labels
        return moved

    def nbytes(self) -> int:
        return int(self.x.nbytes + (0 if self.y is None else self.y.nbytes))

    def with_synthetic(self, x_syn: torch.Tensor, y_syn: torch.Tensor) -> "ArrayDataset":
        """A new dataset with ``x_syn``/``y_syn`` appended once; ids ``>= n_base`` address synthetic rows.

        Synthetic rows already present are kept (before the new ones); the base rows are unchanged.
        """
        if self.y is None:
            raise ConfigError("with_synthetic: the dataset has no labels, synthetic rows need labelled parents")
        x_syn, y_syn = _check_synthetic(self.input_shape, x_syn, y_syn)
        x = torch.cat([self.x, x_syn.to(self.x.device)])
        y = torch.cat([self.y, y_syn.to(self.y.device)])
        return ArrayDataset(x, y, n_base=self.n_base)


class WithSynthetic(BatchDataset):
    """Any `BatchDataset` (in memory, memory-mapped or generic) plus synthetic rows held in memory.

    Ids ``0..len(base)-1`` are the base rows, ``len(base)..`` the synthetic rows in the order given.
    `gather` reads each part with one operation (one ``base.gather``, one `take_rows`) and puts
    the rows back in id order. The base needs labels.

    Args:
        base: the dataset's own rows.
        x_syn: synthetic inputs ``[n, *base.input_shape]``.
        y_syn: their labels ``[n]``.
    """

    def __init__(self, base: BatchDataset, x_syn: torch.Tensor, y_syn: torch.Tensor) -> None:
        if base.labels() is None:
            raise ConfigError("with_synthetic: the dataset has no labels, synthetic rows need labelled parents")
        self.base = base
        self.x_syn, self.y_syn = _check_synthetic(tuple(base.input_shape), x_syn, y_syn)
        self.n_base = len(base)
        self._labels: np.ndarray | None = None

    @property
    def num_synthetic(self) -> int:
        """Synthetic rows appended after the base rows."""
        return int(self.y_syn.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.base.input_shape)

    @property
    def device(self) -> torch.device:
        return self.x_syn.device

    def __len__(self) -> int:
        return self.n_base + self.num_synthetic

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        device = self.x_syn.device
        ids = ids.to(device) if ids.device != device else ids
        is_base = ids < self.n_base
        if bool(is_base.all()):
            part = self.base.gather(ids)
            return {"x": part["x"].to(device), "y": part["y"].to(device)}
        syn = (ids - self.n_base).masked_select(~is_base)
        syn_x, syn_y = take_rows(self.x_syn, syn), take_rows(self.y_syn, syn)
        if not bool(is_base.any()):
            return {"x": syn_x, "y": syn_y}
        part = self.base.gather(ids.masked_select(is_base))
        x = torch.empty((ids.shape[0], *syn_x.shape[1:]), dtype=torch.float32, device=device)
        y = torch.empty(ids.shape[0], dtype=torch.int64, device=device)
        x[is_base], y[is_base] = part["x"].to(device), part["y"].to(device)
        x[~is_base], y[~is_base] = syn_x, syn_y
        return {"x": x, "y": y}

    def labels(self) -> np.ndarray:
        if self._labels is None:
            self._labels = np.concatenate([self.base.labels(), self.y_syn.cpu().numpy()])
        return self._labels

    def features(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        is_base = ids < self.n_base
        out = np.empty((ids.shape[0], int(np.prod(self.input_shape, dtype=np.int64))), dtype=np.float32)
        out[is_base] = self.base.features(ids[is_base]) if is_base.any() else 0
        syn = torch.as_tensor(ids[~is_base] - self.n_base, device=self.x_syn.device)
        out[~is_base] = flat_rows(take_rows(self.x_syn, syn)).cpu().numpy()
        return out

    def to(self, device: Any) -> "WithSynthetic":
        moved = WithSynthetic(self.base.to(device), self.x_syn.to(device), self.y_syn.to(device))
        moved._labels = self._labels
        return moved

    def nbytes(self) -> int | None:
        base = self.base.nbytes()
        return None if base is None else int(base + self.x_syn.nbytes + self.y_syn.nbytes)

    def with_synthetic(self, x_syn: torch.Tensor, y_syn: torch.Tensor) -> "WithSynthetic":
        """The same base with more synthetic rows appended after the ones already here."""
        x_syn, y_syn = _check_synthetic(self.input_shape, x_syn, y_syn)
        return WithSynthetic(self.base, torch.cat([self.x_syn, x_syn.to(self.x_syn.device)]), torch.cat([self.y_syn, y_syn.to(self.y_syn.device)]))
