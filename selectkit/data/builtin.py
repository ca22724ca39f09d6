"""The built-in datasets: Fashion-MNIST and scikit-learn's digits, split, cut down and standardised.

`build_datasets` turns the ``data.*`` settings into in-memory training and validation sets;
`FashionMNIST` and `Digits` are the same as `DataSource` s that a config names by ``_target_``::

    _target_: selectkit.data.FashionMNIST
    data_dir: ${paths.data_dir}
    val_fraction: 0.0
    imbalance: {classes: [0, 2, 4], keep_fraction: 0.05}
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from selectkit.data.base import DataSource
from selectkit.data.fashion import _images, _stats, load_fashion_mnist
from selectkit.data.memory import ArrayDataset
from selectkit.errors import ConfigError

DIGITS_CLASSES = [str(d) for d in range(10)]
#: Valid values of ``data.name``.
DATASETS = ("fashion_mnist", "digits")


# ====================================================================================== digits
def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and validation indices, ``val_fraction`` of each class held out, from ``seed``."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be a number in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng([int(seed), 0x5B17])
    train, val = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        cut = int(round(val_fraction * members.size))
        val.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images, bunch.target
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_digits_dataset(val_fraction: float = 0.25, seed: int = 0) -> dict[str, Any]:
    """scikit-learn's 8x8 digits (offline), split by class: ``{"train": (x, y), "val": (x, y), "classes"}``.

    Images are float32 ``[N, 1, 8, 8]`` in [0, 1], labels int64; the split is stratified and depends
    only on ``seed``.
    """
    images, labels = _digits_raw()
    x = _images(images, 16.0)
    y = labels.astype(np.int64)
    tr, va = stratified_split(y, val_fraction, seed)
    return {"train": (x[tr], y[tr]), "val": (x[va], y[va]), "classes": list(DIGITS_CLASSES)}


# ====================================================================================== imbalance
def make_imbalanced(y: np.ndarray, minority_classes: Sequence[int], keep_fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``y`` that keep every row, except that each of ``minority_classes`` keeps
    only ``keep_fraction`` of its rows (at least one unless the fraction is 0), chosen from ``seed``."""
    if isinstance(keep_fraction, bool) or not isinstance(keep_fraction, (int, float)) or not 0 <= keep_fraction <= 1:
        raise ConfigError(f"data.imbalance.keep_fraction must be a number in [0, 1], got {keep_fraction!r}")
    y = np.asarray(y)
    rng = np.random.default_rng([int(seed), 0x1B4])
    keep = np.ones(y.shape[0], dtype=bool)
    for c in dict.fromkeys(minority_classes):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ConfigError(f"data.imbalance.classes must hold class labels (integers), got {c!r}")
        members = np.flatnonzero(y == c)
        if members.size == 0:
            raise ConfigError(f"data.imbalance.classes: class {c} does not occur in the training data")
        n_keep = 0 if keep_fraction == 0 else max(1, int(round(keep_fraction * members.size)))
        keep[rng.permutation(members)[n_keep:]] = False
    return np.flatnonzero(keep)


# ====================================================================================== entry point
def build_datasets(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    normalize: bool = True,
    imbalance: dict | None = None,
) -> tuple[ArrayDataset, ArrayDataset, dict[str, Any]]:
    """Training and validation `ArrayDataset` s plus ``meta``, from the ``data.*`` settings.

    Args:
        name: ``fashion_mnist`` or ``digits``.
        data_dir: where Fashion-MNIST is looked for first (unused by digits).
        val_fraction: Fashion-MNIST: 0 validates on the official test split, more holds out that share
            of the training split; digits (no test split): the held-out share, 0.25 when 0.
        seed: seed of the split and of the imbalance cut.
        normalize: standardise inputs with the mean and std of the final training set.
        imbalance: ``{"classes": [...], "keep_fraction": f}`` cuts those training classes down
            (`make_imbalanced`); the validation set stays as it is.

    Returns:
        ``(train, val, meta)``; ``meta`` has ``name``, ``num_classes``, ``input_shape``, ``classes``
        and ``train_counts`` (rows per class in the training set).
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if name == "fashion_mnist":
        data = load_fashion_mnist(data_dir)
        x, y = data["train"]
        if val_fraction > 0:
            tr, va = stratified_split(y, val_fraction, seed)
            (x, y), (vx, vy) = (x[tr], y[tr]), (x[va], y[va])
        else:
            vx, vy = data["test"]
    elif name == "digits":
        data = load_digits_dataset(val_fraction if val_fraction > 0 else 0.25, seed)
        (x, y), (vx, vy) = data["train"], data["val"]
    else:
        raise ConfigError(f"data.name must be one of {', '.join(DATASETS)}, got {name!r}")
    classes = data["classes"]
    if imbalance:
        unknown = set(imbalance) - {"classes", "keep_fraction"}
        if unknown:
            raise ConfigError(f"data.imbalance.{sorted(unknown)[0]} is not a setting; the settings are classes and keep_fraction")
        keep = make_imbalanced(y, list(imbalance.get("classes") or []), imbalance.get("keep_fraction", 1.0), seed)
        x, y = x[keep], y[keep]
    if normalize:
        mean, std = _stats(x)
        x = (x - np.float32(mean)) / np.float32(std)
        vx = (vx - np.float32(mean)) / np.float32(std)
    meta = {
        "name": name,
        "num_classes": len(classes),
        "input_shape": tuple(int(s) for s in x.shape[1:]),
        "classes": list(classes),
        "train_counts": np.bincount(y, minlength=len(classes)).tolist(),
    }
    train = ArrayDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y))
    val = ArrayDataset(torch.from_numpy(np.ascontiguousarray(vx, dtype=np.float32)), torch.from_numpy(vy))
    return train, val, meta


# ====================================================================================== sources
class _Builtin(DataSource):
    """A built-in dataset as a `DataSource`: `build_datasets` with fixed settings, run once."""

    name: str = ""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self._loaded = False

    def setup(self) -> None:
        if self._loaded:
            return
        self.train, self.val, self.meta = build_datasets(self.name, **self.settings)
        self._loaded = True

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


class FashionMNIST(_Builtin):
    """Fashion-MNIST (60,000 + 10,000 images of 28x28), held in memory as `ArrayDataset` s.

    Args:
        data_dir: searched first for the four IDX ``.gz`` files; then ``$SELECTKIT_DATA``,
            ``~/.cache/selectkit/fashion-mnist`` and ``/usr/share/datasets/fashion-mnist``.
        val_fraction: 0 validates on the official test split; more holds out that share of the
            training split (stratified, from ``seed``).
        normalize: standardise pixels with the training set's mean and std.
        imbalance: ``{"classes": [...], "keep_fraction": f}`` cuts those training classes down.
        seed: seed of the split and of the imbalance cut.
    """

    name = "fashion_mnist"

    def __init__(self, data_dir: str | Path | None = None, val_fraction: float = 0.0, normalize: bool = True, imbalance: dict | None = None, seed: int = 0) -> None:
        super().__init__(data_dir=data_dir, val_fraction=val_fraction, normalize=normalize, imbalance=imbalance, seed=seed)


class Digits(_Builtin):
    """scikit-learn's 8x8 digits (1,797 images, offline), split by class, held in memory.

    Args:
        val_fraction: the held-out share of each class (0 means 0.25).
        normalize: standardise pixels with the training set's mean and std.
        imbalance: ``{"classes": [...], "keep_fraction": f}`` cuts those training classes down.
        seed: seed of the split and of the imbalance cut.
    """

    name = "digits"

    def __init__(self, val_fraction: float = 0.25, normalize: bool = True, imbalance: dict | None = None, seed: int = 0) -> None:
        super().__init__(val_fraction=val_fraction, normalize=normalize, imbalance=imbalance, seed=seed)
