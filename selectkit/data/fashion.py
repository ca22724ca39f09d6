"""In-memory datasets without torchvision: Fashion-MNIST from its IDX files, scikit-learn's digits.

`ArrayDataset` gathers a whole batch with one indexing operation through ``__getitems__`` (PyTorch's
DataLoader calls it with the sampler's items for one batch, then ``collate_fn``), which is what makes
per-epoch subsets cheap to feed; use `batch_collate` as the loader's ``collate_fn``. Synthetic rows
are appended once with `ArrayDataset.with_synthetic`; their ids follow the dataset's own rows.

`build_datasets` is what ``selectkit-train`` calls with the ``data.*`` settings.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from selectkit.errors import ConfigError, DataNotFoundError

#: Places searched for Fashion-MNIST after ``data.data_dir``, ``$SELECTKIT_DATA`` and the user cache
#: (Debian's ``dataset-fashion-mnist`` package installs the files in the first one).
STANDARD_DIRS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]
#: User cache searched after ``$SELECTKIT_DATA``, relative to the home directory.
USER_CACHE = Path(".cache") / "selectkit" / "fashion-mnist"
FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DIGITS_CLASSES = [str(d) for d in range(10)]
#: Valid values of ``data.name``.
DATASETS = ("fashion_mnist", "digits")

#: IDX element-type byte -> numpy dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# ====================================================================================== dataset
def split_items(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of sampler items (ints, or ``(index, weight)`` pairs) as int64 ids and float32 weights."""
    if len(items) and isinstance(items[0], (tuple, list)):
        pairs = np.asarray(items, dtype=np.float64).reshape(len(items), 2)
        return torch.from_numpy(pairs[:, 0].astype(np.int64)), torch.from_numpy(pairs[:, 1].astype(np.float32))
    idx = torch.from_numpy(np.fromiter(items, dtype=np.int64, count=len(items)))
    return idx, torch.ones(idx.shape[0], dtype=torch.float32)


class ArrayDataset(Dataset):
    """Tensors ``x`` (float32) and ``y`` (int64) in memory, fetched a whole batch at a time.

    ``__getitem__(i)`` returns ``(x[i], y[i], i)``. ``__getitems__(items)`` takes the sampler's items
    for one batch (ints, or ``(index, weight)`` pairs for weighted selections) and returns
    ``{"x", "y", "index", "weight"}`` with one indexing operation per tensor.

    Args:
        x: inputs, first dimension = rows; stored as float32.
        y: integer labels, one per row; stored as int64.
        n_base: rows that belong to the dataset itself; ids ``>= n_base`` are synthetic rows
            (default: every row is a base row).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_base: int | None = None) -> None:
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ConfigError(f"ArrayDataset: x and y must have the same number of rows, got x {tuple(x.shape)} and y {tuple(y.shape)}")
        self.x = x if x.dtype == torch.float32 else x.float()
        self.y = y if y.dtype == torch.int64 else y.long()
        self.n_base = int(x.shape[0] if n_base is None else n_base)
        if not 0 <= self.n_base <= x.shape[0]:
            raise ConfigError(f"ArrayDataset: n_base must be in [0, {x.shape[0]}], got {n_base}")

    @property
    def num_synthetic(self) -> int:
        """Synthetic rows appended after the dataset's own rows."""
        return len(self) - self.n_base

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i], self.y[i], int(i)

    def __getitems__(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """One batch: ``items`` are ints, or ``(index, weight)`` pairs; weights default to ones."""
        idx, weight = split_items(items)
        # index_select is several times faster than advanced indexing for row gathers
        return {"x": self.x.index_select(0, idx), "y": self.y.index_select(0, idx), "index": idx, "weight": weight}

    def with_synthetic(self, x_syn: torch.Tensor, y_syn: torch.Tensor) -> "ArrayDataset":
        """A new dataset with ``x_syn``/``y_syn`` appended once; ids ``>= n_base`` address synthetic rows.

        Synthetic rows already present are kept (before the new ones); the base rows are unchanged.
        """
        x_syn, y_syn = torch.as_tensor(x_syn), torch.as_tensor(y_syn)
        if tuple(x_syn.shape[1:]) != tuple(self.x.shape[1:]) or y_syn.ndim != 1 or x_syn.shape[0] != y_syn.shape[0]:
            raise ConfigError(
                f"with_synthetic: synthetic rows must be x {('n',) + tuple(self.x.shape[1:])} and y (n,), got x {tuple(x_syn.shape)} and y {tuple(y_syn.shape)}"
            )
        x = torch.cat([self.x, x_syn.to(torch.float32)])
        y = torch.cat([self.y, y_syn.to(torch.int64)])
        return ArrayDataset(x, y, n_base=self.n_base)


def batch_collate(batch: Any) -> Any:
    """The DataLoader ``collate_fn`` for `ArrayDataset`: the batch from ``__getitems__``, unchanged."""
    return batch


# ====================================================================================== IDX files
def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an IDX file (magic ``0 0 type ndim``, ``ndim`` big-endian uint32 sizes, data).

    Raises `ConfigError` naming ``source`` and ``data.data_dir`` when the header or size is wrong.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ConfigError(f"data.data_dir: {source} is not an IDX file (bad magic number)")
    if raw[2] not in _IDX_DTYPES:
        raise ConfigError(f"data.data_dir: {source} has an unknown IDX element type 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ConfigError(f"data.data_dir: {source} has a truncated or empty IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[raw[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ConfigError(f"data.data_dir: {source} holds {len(raw) - header} data bytes but its header {shape} says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``) into a read-only numpy array."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:
        raise ConfigError(f"data.data_dir: cannot read {path}: {err}") from None
    return parse_idx(raw, str(path))


def candidate_dirs(data_dir: str | Path | None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order: ``data_dir`` (and its ``fashion-mnist`` and
    ``FashionMNIST/raw`` sub-folders), ``$SELECTKIT_DATA``, ``~/.cache/selectkit/fashion-mnist``,
    then `STANDARD_DIRS`."""
    dirs: list[Path] = []
    if data_dir:
        base = Path(data_dir).expanduser()
        dirs += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    env = os.environ.get("SELECTKIT_DATA")
    if env:
        base = Path(env).expanduser()
        dirs += [base, base / "fashion-mnist"]
    dirs.append(Path.home() / USER_CACHE)
    dirs += [Path(d) for d in STANDARD_DIRS]
    return list(dict.fromkeys(dirs))


def find_fashion_mnist(data_dir: str | Path | None) -> Path:
    """The first of `candidate_dirs` holding the four Fashion-MNIST IDX files; `DataNotFoundError` otherwise."""
    dirs = candidate_dirs(data_dir)
    for d in dirs:
        if all((d / f).is_file() for f in FASHION_FILES.values()):
            return d
    raise DataNotFoundError(
        f"Fashion-MNIST not found; set data.data_dir (looked in: {', '.join(str(d) for d in dirs)}); "
        f"get it with 'apt-get install dataset-fashion-mnist' or download {', '.join(FASHION_FILES.values())} into data.data_dir"
    )


@lru_cache(maxsize=2)
def _decode_fashion(folder: str, stamp: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The four decoded IDX arrays of ``folder`` (``stamp``: file mtimes, so a replaced file is re-read)."""
    d = Path(folder)
    out = {k: read_idx(d / f) for k, f in FASHION_FILES.items()}
    for split in ("train", "test"):
        xs, ys = out[f"{split}_x"], out[f"{split}_y"]
        if xs.ndim != 3 or xs.shape[1:] != (28, 28) or ys.ndim != 1 or xs.shape[0] != ys.shape[0]:
            raise ConfigError(f"data.data_dir: {d} holds {split} images {xs.shape} and labels {ys.shape}, not matching 28x28 Fashion-MNIST")
        if ys.size and (ys.min() < 0 or ys.max() >= len(FASHION_CLASSES)):
            raise ConfigError(f"data.data_dir: {d} holds {split} labels outside 0..{len(FASHION_CLASSES) - 1}")
    return out


def _cache_clear() -> None:
    """Forget the decoded Fashion-MNIST arrays (tests that move the data around)."""
    _decode_fashion.cache_clear()


def load_fashion_mnist(data_dir: str | Path | None = None, normalize: bool = False) -> dict[str, Any]:
    """Fashion-MNIST: ``{"train": (x, y), "test": (x, y), "classes": [...], "mean", "std"}``.

    Images are float32 ``[N, 1, 28, 28]`` in [0, 1], or standardised with the training set's mean and
    std when ``normalize``; labels are int64. The decoded files are cached per process, and each call
    returns fresh arrays. Raises `DataNotFoundError` (naming ``data.data_dir``) when the files are
    nowhere to be found.
    """
    folder = find_fashion_mnist(data_dir)
    stamp = tuple((folder / f).stat().st_mtime_ns for f in FASHION_FILES.values())
    raw = _decode_fashion(str(folder), stamp)
    train_x = _images(raw["train_x"], 255.0)
    test_x = _images(raw["test_x"], 255.0)
    mean, std = _stats(train_x)
    if normalize:
        for a in (train_x, test_x):
            a -= mean
            a /= std
    return {
        "train": (train_x, raw["train_y"].astype(np.int64)),
        "test": (test_x, raw["test_y"].astype(np.int64)),
        "classes": list(FASHION_CLASSES),
        "mean": mean,
        "std": std,
    }


def _images(a: np.ndarray, scale: float) -> np.ndarray:
    out = a.astype(np.float32)[:, None, :, :]
    out /= np.float32(scale)
    return out


def _stats(x: np.ndarray) -> tuple[float, float]:
    if x.size == 0:
        return 0.0, 1.0
    mean = float(x.mean(dtype=np.float64))
    std = float(x.std(dtype=np.float64))
    return mean, std if std > 0 else 1.0


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
