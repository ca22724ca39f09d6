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
        return flat_rows(self.gather(idx)["x"]).to("cpu", torch.float32).numpy()

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


def flat_rows(x: Any) -> Any:
    """``x`` (a tensor or array ``[n, ...]``) as ``[n, d]``; also when ``n`` is 0."""
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))


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


def check_labels(
    y: Any,
    setting: str,
    num_classes: int | None = None,
    *,
    classes: Sequence[str] | None = None,
    classes_setting: str | None = "data.classes",
    ids: Sequence[int] | None = None,
    unit: str = "row",
) -> np.ndarray:
    """``y`` as int64 ``[N]`` class ids: the one label validator every source reads its labels through.

    ``y`` may be an array, a tensor or a sequence of per-row values (numbers, one-value tensors or
    arrays, strings). String labels become their position in ``classes`` when it is given; without
    it they are refused, saying how to map them (and naming ``classes_setting``, the source's setting
    for class names, unless it is None). NaN, non-integer, negative and ``>= num_classes`` labels are
    refused, naming the first offending ``unit`` (``ids[i]``, its position when ``ids`` is None) and
    its value. Every refusal is a one-line `ConfigError` starting with ``setting``.
    """
    arr = _label_array(y, setting, ids, unit)
    if arr.ndim != 1:
        raise ConfigError(f"{setting}: labels must be one class id per {unit} (1-D), got shape {arr.shape}")
    ids = range(arr.shape[0]) if ids is None else ids
    if arr.dtype.kind == "O":
        arr = _object_labels(arr, setting, ids, unit)
    kind = arr.dtype.kind
    if kind in "US":
        out = _strings_to_ids(arr.astype(str), setting, ids, unit, classes, classes_setting)
    elif kind == "f":
        bad = ~np.isfinite(arr)
        bad[~bad] = arr[~bad] != np.round(arr[~bad])
        if bad.any():
            i = _first(bad)
            raise ConfigError(f"{setting}: {unit} {ids[i]} has label {arr[i].item()!r}, not a class id (an integer 0..C-1)")
        out = arr.astype(np.int64)
    elif kind in "iu":
        out = arr.astype(np.int64, copy=False)
    elif kind == "b":
        raise ConfigError(f"{setting}: labels are True/False, not class ids; give integers 0..C-1 (e.g. 0 and 1)")
    else:
        raise ConfigError(f"{setting}: labels must be integer class ids 0..C-1, got dtype {arr.dtype}")
    if out.size and out.min() < 0:
        i = _first(out < 0)
        raise ConfigError(f"{setting}: {unit} {ids[i]} has label {int(out[i])}; class ids are integers 0..C-1")
    if num_classes is not None and out.size and out.max() >= num_classes:
        i = _first(out >= num_classes)
        raise ConfigError(f"{setting}: {unit} {ids[i]} has label {int(out[i])}, out of range for {num_classes} classes (0..{num_classes - 1})")
    return out


def check_classes(classes: Any, setting: str = "data.classes") -> list[str] | None:
    """Class names as a list of distinct strings (None stays None); a one-line `ConfigError` otherwise."""
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ConfigError(f"{setting} must be a list of class names in class order, got {classes!r}")
    names = [str(c) for c in classes]
    if not names or len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"{setting} must name each class once, got {'no names' if not names else 'twice: ' + ', '.join(twice)}")
    return names


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _shown(values: Any, limit: int = 2) -> str:
    """Up to ``limit`` distinct values in order of appearance, each repr cut to 30 characters."""
    distinct = list(dict.fromkeys(np.asarray(values, dtype=object).reshape(-1).tolist()))
    shown = [r if len(r) <= 30 else r[:27] + "..." for r in map(repr, distinct[:limit])]
    return ", ".join(shown) + (", ..." if len(distinct) > limit else "")


def _label_array(y: Any, setting: str, ids: Sequence[int] | None, unit: str) -> np.ndarray:
    """The raw labels as one numpy array; a per-row tensor or array of one value becomes that value."""
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy()
    if isinstance(y, (list, tuple)) and any(isinstance(v, (torch.Tensor, np.ndarray)) for v in y):
        values = []
        for pos, v in enumerate(y):
            if isinstance(v, (torch.Tensor, np.ndarray)):
                if (v.numel() if isinstance(v, torch.Tensor) else v.size) != 1:
                    raise ConfigError(f"{setting}: {unit} {pos if ids is None else ids[pos]} has a label of shape {tuple(v.shape)}, not one class id")
                v = v.reshape(-1)[0].item()
            values.append(v)
        y = values
    try:
        return np.asarray(y)
    except (TypeError, ValueError):
        return np.asarray(list(y), dtype=object)


def _object_labels(arr: np.ndarray, setting: str, ids: Sequence[int], unit: str) -> np.ndarray:
    """An object array of labels as strings (every value a str) or float64 (every value a number)."""
    strings = np.array([isinstance(v, str) for v in arr], dtype=bool)
    if strings.all():
        return arr.astype(str)
    numbers = np.array([isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in arr], dtype=bool)
    if numbers.all():
        return arr.astype(np.float64)
    i = _first(~strings if strings[0] else ~numbers)
    mixed = f"labels are strings ({_shown(arr[strings])}) but " if strings[0] else ""
    raise ConfigError(f"{setting}: {mixed}{unit} {ids[i]} has label {_shown(arr[i : i + 1])}, not a class id (an integer 0..C-1)")


def _strings_to_ids(arr: np.ndarray, setting: str, ids: Sequence[int], unit: str, classes: Sequence[str] | None, classes_setting: str | None) -> np.ndarray:
    """String labels as their positions in ``classes``; refused, saying how to map them, without it."""
    if classes is None:
        how = f", or set {classes_setting} to the class names in class order (each label becomes its name's position)" if classes_setting else ""
        raise ConfigError(f"{setting}: labels are strings ({_shown(arr)}), not class ids; map them to integers 0..C-1 in the data{how}")
    position = {str(c): i for i, c in enumerate(classes)}
    names, inverse = np.unique(arr, return_inverse=True)
    out = np.array([position.get(str(n), -1) for n in names], dtype=np.int64)[inverse.reshape(-1)]
    if (out < 0).any():
        i = _first(out < 0)
        raise ConfigError(f"{setting}: {unit} {ids[i]} has label {_shown(arr[i : i + 1])}, which is not in {classes_setting or 'the classes'} ({_shown(list(classes), 4)})")
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
