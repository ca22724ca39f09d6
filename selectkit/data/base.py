"""The data contract: `BatchDataset` (rows fetched a batch at a time) and `DataSource` (what the
``data`` config group instantiates).

A `BatchDataset` addresses its rows by int ids ``0..len-1`` and returns a whole batch from one call to
`BatchDataset.gather`; `selectkit.data.batches.Batches` puts one in front of a DataLoader. A
`DataSource` loads in `DataSource.setup` and then exposes ``train``, ``val`` and ``meta``.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
import torch

from selectkit.errors import ConfigError


class BatchDataset(abc.ABC):
    """Rows addressed by int ids 0..len-1, fetched a whole batch at a time."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of rows."""

    @abc.abstractmethod
    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows `ids` (int64 1-D tensor, any order, repeats allowed) as {"x": [b, ...] float32, "y": [b] int64}
        ("y" absent when the data has no labels); extra keys allowed."""

    def labels(self) -> np.ndarray | None:
        """Labels of all rows (int64 [N]), read once and cached, or None when unlabelled. Cheap."""
        return None

    def features(self, ids: np.ndarray) -> np.ndarray:
        """Flattened raw inputs of `ids` as float32 [n, d] (default: gather(ids)["x"] flattened)."""
        idx = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        x = self.gather(idx)["x"]
        return x.reshape(x.shape[0], -1).to("cpu", torch.float32).numpy()

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row of ``x``."""

    @property
    def device(self) -> torch.device:
        """Where `gather` returns its tensors (the CPU unless `to` moved the rows)."""
        return torch.device("cpu")

    def to(self, device: Any) -> "BatchDataset":
        """Move in-memory tensors to `device` once (default: return self unchanged for sources that
        cannot); after it gather() returns tensors on that device (index_select on the device)."""
        return self

    def nbytes(self) -> int | None:
        """In-memory size in bytes, or None when the rows are not held in memory."""
        return None

    def with_synthetic(self, x_syn: torch.Tensor, y_syn: torch.Tensor) -> "BatchDataset":
        """This dataset with synthetic rows appended once (`selectkit.data.WithSynthetic`)."""
        from selectkit.data.memory import WithSynthetic

        return WithSynthetic(self, x_syn, y_syn)


class DataSource(abc.ABC):
    """What the `data` config group instantiates. `setup()` loads (idempotent, cheap the second time).

    After `setup`: ``train`` (a `BatchDataset`), ``val`` (a `BatchDataset` or None) and ``meta`` with
    ``name`` (str), ``num_classes`` (int or None), ``classes`` (list of str or None), ``input_shape``
    (tuple) and ``train_counts`` (rows per class of ``train``, or None when unlabelled).
    """

    train: BatchDataset
    val: BatchDataset | None
    meta: dict

    @abc.abstractmethod
    def setup(self) -> None:
        """Load the data; a second call returns at once."""


def check_labels(y: Any, setting: str, num_classes: int | None = None) -> np.ndarray:
    """``y`` as int64 ``[N]``; refuses non-integer values, negatives and labels ``>= num_classes``
    with a one-line `ConfigError` naming ``setting``."""
    arr = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    if arr.ndim != 1:
        raise ConfigError(f"{setting}: labels must be one integer per row (1-D), got shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ConfigError(f"{setting}: labels must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise ConfigError(f"{setting}: labels must be integers, got non-integer values of dtype {arr.dtype}")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise ConfigError(f"{setting}: labels must be class numbers >= 0, got {int(out.min())}")
    if num_classes is not None and out.size and out.max() >= num_classes:
        raise ConfigError(f"{setting}: label {int(out.max())} is out of range for {num_classes} classes (0..{num_classes - 1})")
    return out


def source_meta(name: str, train: BatchDataset, num_classes: int | None = None, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``meta`` of a source from its training set: classes inferred from the labels when not given."""
    y = train.labels()
    if num_classes is None and classes is not None:
        num_classes = len(classes)
    if num_classes is None and y is not None:
        num_classes = int(y.max()) + 1 if y.size else 0
    return {
        "name": str(name),
        "num_classes": None if num_classes is None else int(num_classes),
        "classes": None if classes is None else [str(c) for c in classes],
        "input_shape": tuple(int(s) for s in train.input_shape),
        "train_counts": None if y is None else np.bincount(y, minlength=num_classes or 0).tolist(),
    }
