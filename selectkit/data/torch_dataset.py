"""`TorchDataset`: any map-style torch Dataset as a data source.

Items ``dataset[i]`` may be ``(x, y)`` tuples, dicts with ``"x"`` and ``"y"``, or ``x`` alone
(unlabelled). A batch is fetched item by item and stacked (inside DataLoader workers when the loader
has any). Labels are read once, through the cheapest hook available (see `TorchDataset`). With Hydra
the datasets are nested ``_target_`` nodes, built before the source::

    _target_: selectkit.data.TorchDataset
    dataset: {_target_: mypackage.MyDataset, root: /data, split: train}
    val_dataset: {_target_: mypackage.MyDataset, root: /data, split: test}
    labels: null          # or a .npy/.txt file, or the name of an attribute or method
    num_classes: null     # inferred from the labels
    classes: null         # class names in class order; string labels become their position
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from selectkit.data.base import BatchDataset, DataSource, check_classes, check_labels, source_meta
from selectkit.errors import ConfigError

_EXPECTED = "expected (x, y), {'x': ..., 'y': ...} or x alone"


def _as_tensor(x: Any, setting: str, i: int) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{setting}: item {i} has x of type {type(x).__name__}, not a tensor, array or number; add a transform that returns a tensor") from None
    if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ConfigError(f"{setting}: item {i} has x of dtype {t.dtype}, not numbers")
    return t


def split_item(item: Any, setting: str, i: int) -> tuple[Any, Any]:
    """``(x, y)`` of one dataset item, ``y`` None for an unlabelled item; `ConfigError` for other shapes."""
    if isinstance(item, (tuple, list)):
        if len(item) == 2:
            return item[0], item[1]
        if len(item) == 1:
            return item[0], None
        raise ConfigError(f"{setting}: item {i} is a {type(item).__name__} of {len(item)} values; {_EXPECTED}")
    if isinstance(item, (torch.Tensor, np.ndarray)):
        return item, None
    if isinstance(item, Mapping):
        if "x" not in item:
            raise ConfigError(f"{setting}: item {i} is a dict without 'x' (keys: {', '.join(map(str, item))}); {_EXPECTED}")
        return item["x"], item.get("y")
    raise ConfigError(f"{setting}: item {i} is a {type(item).__name__}; {_EXPECTED}")


class TorchItems(BatchDataset):
    """A map-style torch Dataset read item by item, stacked into float32 batches.

    ``y`` comes from the items when they carry labels, else from `labels` when a hook gave them.

    Args:
        dataset: the torch Dataset (``__len__`` and ``__getitem__``).
        labels: where labels come from: None (hooks, then every item), a ``.npy``/``.txt`` path, an
            attribute or method name, or the labels themselves.
        num_classes: labels must lie in ``0..num_classes-1`` when given.
        setting: the setting named in errors about the items (``data.dataset``).
        labels_setting: the setting named in errors about the labels (``data.labels``).
        classes: class names; string labels become their position in it (`check_labels`).
    """

    def __init__(
        self,
        dataset: Any,
        labels: Any = None,
        num_classes: int | None = None,
        setting: str = "data.dataset",
        labels_setting: str = "data.labels",
        classes: Sequence[str] | None = None,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ConfigError(f"{setting} must be a map-style torch Dataset (with __len__ and __getitem__), got {type(dataset).__name__}")
        self.dataset = dataset
        self.labels_spec = labels
        self.num_classes, self.classes = num_classes, classes
        self.setting, self.labels_setting = setting, labels_setting
        n = len(dataset)
        if n == 0:
            raise ConfigError(f"{setting}: the dataset is empty")
        x0, y0 = split_item(dataset[0], setting, 0)
        self._shape = tuple(int(s) for s in _as_tensor(x0, setting, 0).shape)
        self.item_labels = y0 is not None
        self._labels: np.ndarray | None = None
        self._labels_read = False

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        order = ids.tolist()
        if not order:
            return self._empty()
        xs, ys = [], []
        dataset, setting, tensor = self.dataset, self.setting, torch.Tensor
        for i in order:
            item = dataset[i]
            if type(item) is tuple and len(item) == 2:
                x, y = item
            else:
                x, y = split_item(item, setting, i)
            xs.append(x if isinstance(x, tensor) else _as_tensor(x, setting, i))
            ys.append(y)
        try:
            # default_collate stacks into shared memory inside DataLoader workers (no copy on the way back)
            x = default_collate(xs)
        except RuntimeError:
            shapes = sorted({tuple(t.shape) for t in xs})
            raise ConfigError(f"{self.setting}: items have different shapes {shapes[:3]}; add a transform that gives every x one shape") from None
        out = {"x": x if x.dtype == torch.float32 else x.float()}
        if self.item_labels:
            out["y"] = self._stack_labels(ys, order)
        elif self.labels() is not None:
            out["y"] = torch.from_numpy(self._labels[ids.cpu().numpy()])
        return out

    def _empty(self) -> dict[str, torch.Tensor]:
        """The batch of no rows: the keys, trailing shapes and dtypes of any other batch (no item is fetched)."""
        out = {"x": torch.empty((0, *self._shape), dtype=torch.float32)}
        if self.item_labels or self.labels() is not None:
            out["y"] = torch.empty(0, dtype=torch.int64)
        return out

    def _stack_labels(self, ys: list, order: list[int]) -> torch.Tensor:
        if any(y is None for y in ys):
            raise ConfigError(f"{self.setting}: some items carry a label and some do not")
        try:
            y = default_collate(ys) if isinstance(ys[0], torch.Tensor) else torch.as_tensor(ys)
        except (TypeError, ValueError, RuntimeError):
            y = None
        if y is not None and y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if (
            y is None
            or y.ndim != 1
            or y.shape[0] != len(order)
            or y.dtype == torch.bool
            or y.is_complex()
            or (y.is_floating_point() and not bool((y == y.round()).all()))
            or int(y.min()) < 0
            or (self.num_classes is not None and int(y.max()) >= self.num_classes)
        ):
            # the slow path maps class names and names the first item whose label is not a class id
            return torch.from_numpy(self._check(ys, self.setting, order))
        return y if y.dtype == torch.int64 else y.long()

    def _check(self, y: Any, setting: str, ids: Sequence[int] | None = None) -> np.ndarray:
        return check_labels(y, setting, self.num_classes, classes=self.classes, ids=ids, unit="item")

    def labels(self) -> np.ndarray | None:
        if not self._labels_read:
            raw, setting = self._read_labels()
            if raw is not None:
                y = self._check(raw, setting)
                if y.shape[0] != len(self):
                    raise ConfigError(f"{self.labels_setting}: {y.shape[0]} labels for {len(self)} items")
                self._labels = y
            self._labels_read = True
        return self._labels

    def _read_labels(self) -> tuple[Any, str]:
        """The raw labels (None when unlabelled) and the setting that errors about them name."""
        spec, ds, setting = self.labels_spec, self.dataset, self.labels_setting
        if spec is None:
            for name in ("labels", "get_labels"):
                hook = getattr(ds, name, None)
                if callable(hook):
                    return hook(), setting
            for name in ("targets", "labels"):
                value = getattr(ds, name, None)
                if value is not None and not callable(value):
                    return value, setting
            return (self._fetch_labels(), self.setting) if self.item_labels else (None, setting)
        if isinstance(spec, (str, Path)):
            text = str(spec)
            if text.endswith((".npy", ".txt")) or "/" in text:
                return _read_label_file(Path(text).expanduser(), setting), setting
            if not hasattr(ds, text):
                raise ConfigError(f"{setting}: {type(ds).__name__} has no attribute or method {text!r}, and it is not a .npy/.txt file")
            value = getattr(ds, text)
            return (value() if callable(value) else value), setting
        if isinstance(spec, (Sequence, np.ndarray, torch.Tensor)):
            return spec, setting
        raise ConfigError(f"{setting} must be null, a .npy/.txt file, an attribute name or the labels, got {type(spec).__name__}")

    def _fetch_labels(self) -> list:
        """Every item's raw label, each item fetched once (validated by the caller, naming the item)."""
        from tqdm.auto import tqdm

        out = []
        for i in tqdm(range(len(self)), desc="reading labels", unit="item", disable=None, leave=False):
            _, y = split_item(self.dataset[i], self.setting, i)
            if y is None:
                raise ConfigError(f"{self.setting}: some items carry a label and some do not")
            out.append(y)
        return out


def _read_label_file(path: Path, setting: str) -> np.ndarray:
    """Labels from a ``.npy`` file, or a ``.txt`` file of numbers or class names (one per item)."""
    if not path.is_file():
        raise ConfigError(f"{setting}: {path} does not exist")
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        text = np.loadtxt(path, dtype=str, ndmin=1)
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"{setting}: cannot read labels from {path}: {err}".replace("\n", " ")) from None
    try:
        return text.astype(np.float64)
    except ValueError:
        return text


class TorchDataset(DataSource):
    """Any map-style torch Dataset as a `DataSource`.

    Labels are read once, on first use: with ``labels: null`` from a ``labels()`` or
    ``get_labels()`` method, else a ``targets`` or ``labels`` attribute, else by fetching every item
    once (with a progress bar); ``labels`` may instead be a ``.npy``/``.txt`` file (one label per
    item of ``dataset``) or the name of an attribute or method (used for ``val_dataset`` too).

    Args:
        dataset: the training Dataset (already built; Hydra builds nested ``_target_`` nodes first).
        val_dataset: the validation Dataset, or None.
        labels: where the training labels come from (see above).
        num_classes: the number of classes; inferred from the training labels when None.
        classes: class names in class order; their number is ``num_classes`` when that is not given,
            and string labels become their position in it (labels ``"benign"``, ``"malignant"`` with
            ``classes: [benign, malignant]`` are classes 0 and 1).
    """

    def __init__(self, dataset: Any, val_dataset: Any = None, labels: Any = None, num_classes: int | None = None, classes: Sequence[str] | None = None) -> None:
        self.dataset, self.val_dataset = dataset, val_dataset
        self.labels_spec = labels
        self.num_classes, self.classes = num_classes, classes
        self._loaded = False

    def setup(self) -> None:
        if self._loaded:
            return
        num_classes, classes = self.num_classes, check_classes(self.classes)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ConfigError(f"data.num_classes must be a positive integer or null, got {num_classes!r}")
        if classes is not None:
            if num_classes is not None and len(classes) != num_classes:
                raise ConfigError(f"data.classes names {len(classes)} classes but data.num_classes is {num_classes}")
            num_classes = len(classes)
        self.train = TorchItems(self.dataset, self.labels_spec, num_classes, classes=classes)
        y = self.train.labels()
        if num_classes is None and y is not None:
            num_classes = int(y.max()) + 1 if y.size else 0
        self.val = None
        if self.val_dataset is not None:
            named = self.labels_spec if isinstance(self.labels_spec, str) and not self.labels_spec.endswith((".npy", ".txt")) and "/" not in self.labels_spec else None
            self.val = TorchItems(self.val_dataset, named, num_classes, setting="data.val_dataset", labels_setting="data.val_dataset", classes=classes)
            if self.val.input_shape != self.train.input_shape:
                raise ConfigError(f"data.val_dataset: items of shape {self.val.input_shape} do not match the training items {self.train.input_shape}")
        self.meta = source_meta(type(self.dataset).__name__, self.train, num_classes, classes)
        self._loaded = True

    def __repr__(self) -> str:
        return f"TorchDataset(dataset={type(self.dataset).__name__}, val_dataset={type(self.val_dataset).__name__ if self.val_dataset is not None else None})"
