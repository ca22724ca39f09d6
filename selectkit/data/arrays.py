"""`Arrays`: a data source of features and labels saved with numpy, memory-mapped by default.

Where the rows live (``train`` and ``val`` take the same forms):

- ``path/pool.npz``: one file holding ``x_key`` (features) and, optionally, ``y_key`` (labels);
- ``{x: path/x.npy, y: path/y.npy}``: one ``.npy`` file each (``y`` may be left out);
- ``path/x.npy``: features only (an unlabelled pool).

With ``mmap: true`` the features stay on disk: ``.npy`` files are opened with
``np.load(mmap_mode="r")`` and only the rows of each batch are read, so a pool larger than memory
works. numpy ignores ``mmap_mode`` for ``.npz`` archives, so members of an uncompressed archive
(``np.savez``) are mapped here directly at their offset in the file; a compressed one
(``np.savez_compressed``) cannot be mapped and is refused, naming ``data.mmap``. Labels are small and
are read into memory once, as integer class ids 0..C-1, or as class names given in ``classes``. A
Hydra config::

    _target_: selectkit.data.Arrays
    train: {x: /data/pool_x.npy, y: /data/pool_y.npy}
    val: /data/val.npz
    mmap: true
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selectkit.data.base import BatchDataset, DataSource, check_classes, check_labels, flat_rows, source_meta
from selectkit.data.memory import ArrayDataset
from selectkit.errors import ConfigError

#: Rows per block when the standardisation statistics are computed over a memory-mapped array.
STATS_BLOCK_BYTES = 64 << 20

_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class MappedArrays(BatchDataset):
    """Rows of a numpy array that may be memory-mapped, converted to float32 a batch at a time.

    `gather` sorts the batch's distinct ids, reads those rows from the array in one ``np.take``
    (in file order, for locality), then puts them back in the order asked for. Labels are
    held in memory.

    Args:
        x: features ``[N, ...]`` of any numeric dtype (an ``np.memmap`` or an in-memory array).
        y: int64 labels ``[N]``, or None when unlabelled.
        mean, std: when given, rows are returned as ``(x - mean) / std`` in float32.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None = None, mean: float | None = None, std: float | None = None) -> None:
        self.x = x
        self.y = y
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    @property
    def mapped(self) -> bool:
        """Whether the features are memory-mapped (not held in memory)."""
        return isinstance(self.x, np.memmap)

    def rows(self, ids: np.ndarray) -> torch.Tensor:
        """Rows ``ids`` (int64 numpy, any order, repeats allowed) as a float32 tensor."""
        n = len(self)
        if ids.size and (int(ids.min()) < -n or int(ids.max()) >= n):
            raise IndexError(f"row ids must be in [0, {n}), got {int(ids.min())}..{int(ids.max())}")
        ids = np.where(ids < 0, ids + n, ids)
        uniq, inverse = np.unique(ids, return_inverse=True)
        flat = self.x.reshape(self.x.shape[0], -1) if self.x.ndim > 2 and self.x.flags.c_contiguous else self.x
        block = np.take(flat, uniq, axis=0)
        block = block if block.dtype == np.float32 and type(block) is np.ndarray else np.asarray(block, dtype=np.float32)
        if self.mean is not None:
            standardise(block, self.mean, self.std)
        if uniq.shape[0] != ids.shape[0] or not np.array_equal(uniq, ids):
            block = np.take(block, inverse.reshape(-1), axis=0)
        return torch.from_numpy(block).view(ids.shape[0], *self.x.shape[1:])

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        ids_np = ids.cpu().numpy().astype(np.int64, copy=False)
        out = {"x": self.rows(ids_np)}
        if self.y is not None:
            out["y"] = torch.from_numpy(self.y[ids_np])
        return out

    def labels(self) -> np.ndarray | None:
        return self.y

    def features(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return flat_rows(self.rows(ids)).numpy()

    def nbytes(self) -> int | None:
        if self.mapped:
            return None
        return int(self.x.nbytes + (0 if self.y is None else self.y.nbytes))


def standardise(a: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(a - mean) / std`` in place, in float32 (the same arithmetic for mapped and in-memory rows)."""
    np.subtract(a, np.float32(mean), out=a)
    np.divide(a, np.float32(std), out=a)
    return a


def array_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of every value of ``x`` (float64 sums, block by block, two passes); std 1 when 0."""
    if x.size == 0:
        return 0.0, 1.0
    row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * 8)
    step = max(1, STATS_BLOCK_BYTES // row)
    total = 0.0
    for i in range(0, x.shape[0], step):
        total += float(np.asarray(x[i : i + step], dtype=np.float64).sum())
    mean = total / x.size
    sq = 0.0
    for i in range(0, x.shape[0], step):
        block = (np.asarray(x[i : i + step], dtype=np.float64) - mean).reshape(-1)
        sq += float(block @ block)
    std = (sq / x.size) ** 0.5
    return mean, std if std > 0 else 1.0


# ====================================================================================== files
def _missing(path: Path, setting: str) -> ConfigError:
    return ConfigError(f"{setting}: {path} does not exist")


def _open_npy(path: Path, setting: str, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise _missing(path, setting)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"{setting}: cannot read {path} as a .npy array: {err}".replace("\n", " ")) from None


def map_npz_member(path: Path, member: str, setting: str) -> np.memmap:
    """Memory-map ``member`` of an uncompressed ``.npz`` archive at its offset in the file.

    Refuses (naming ``data.mmap``) a compressed member, which numpy cannot map.
    """
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member + ".npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ConfigError(
            f"data.mmap: {path} is compressed (np.savez_compressed) and numpy cannot memory-map .npz members; "
            f"save it with np.savez or as .npy files, or set data.mmap=false to load it into memory"
        )
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ConfigError(f"{setting}: {path} is not a readable .npz archive (bad local header of {member})")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(fh)
        if version not in _NPY_HEADER_READERS:
            raise ConfigError(f"data.mmap: {member} in {path} uses .npy format {version}, which cannot be mapped here; set data.mmap=false")
        shape, fortran, dtype = _NPY_HEADER_READERS[version](fh)
        offset = fh.tell()
    if dtype.hasobject:
        raise ConfigError(f"{setting}: {member} in {path} holds Python objects, not numbers")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _open_npz(path: Path, x_key: str, y_key: str | None, setting: str, mmap: bool) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise _missing(path, setting)
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if x_key not in names:
                raise ConfigError(f"data.x_key: {x_key!r} is not in {path} (it holds: {', '.join(names) or 'nothing'})")
            if y_key is not None and y_key not in names and y_key != "y":
                raise ConfigError(f"data.y_key: {y_key!r} is not in {path} (it holds: {', '.join(names)}); set data.y_key=null for unlabelled rows")
            has_y = y_key is not None and y_key in names
            if not mmap:
                return archive[x_key], archive[y_key] if has_y else None
    except ConfigError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ConfigError(f"{setting}: cannot read {path} as a .npz archive: {err}".replace("\n", " ")) from None
    x = map_npz_member(path, x_key, setting)
    y = np.asarray(map_npz_member(path, y_key, setting)) if has_y else None
    return x, y


def open_arrays(spec: Any, setting: str, x_key: str, y_key: str | None, mmap: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(x, y or None, name)`` from one ``train``/``val`` setting (see the module docstring)."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"x", "y"}
        if unknown or "x" not in spec:
            raise ConfigError(f"{setting} must be a .npz/.npy path or a mapping {{x: features.npy, y: labels.npy}}, got keys {sorted(map(str, spec))}")
        paths = {k: Path(str(v)).expanduser() for k, v in spec.items() if v is not None}
        for key, path in paths.items():
            if path.suffix != ".npy":
                raise ConfigError(f"{setting}.{key}: expected a .npy file, got {path}")
        x = _open_npy(paths["x"], f"{setting}.x", mmap)
        y = np.asarray(_open_npy(paths["y"], f"{setting}.y", mmap=False)) if "y" in paths else None
        return x, y, paths["x"].stem
    if not isinstance(spec, (str, Path)):
        raise ConfigError(f"{setting} must be a .npz/.npy path or a mapping {{x: features.npy, y: labels.npy}}, got {type(spec).__name__}")
    path = Path(spec).expanduser()
    if path.suffix == ".npz":
        x, y = _open_npz(path, x_key, y_key, setting, mmap)
        return x, y, path.stem
    if path.suffix == ".npy":
        return _open_npy(path, setting, mmap), None, path.stem
    raise ConfigError(f"{setting}: expected a .npz or .npy file, got {path}")


# ====================================================================================== source
class Arrays(DataSource):
    """Features and labels from ``.npy``/``.npz`` files; memory-mapped rows by default.

    Args:
        train: the training rows: a ``.npz`` path, a ``{x: ..npy, y: ..npy}`` mapping, or a ``.npy``
            path of features only (unlabelled).
        val: the validation rows, in the same forms, or None.
        x_key: name of the features in a ``.npz`` archive.
        y_key: name of the labels in a ``.npz`` archive; an archive without ``y`` (the default name)
            is unlabelled; None forces unlabelled.
        mmap: keep the features on disk and read each batch's rows from the map; false loads them
            into memory as float32 tensors.
        normalize: standardise inputs with the mean and std of the training features.
        classes: class names in class order; labels saved as strings (``np.save`` of a string
            array) become their position in it. Unset, the labels must be integers 0..C-1.
    """

    def __init__(
        self,
        train: Any,
        val: Any = None,
        x_key: str = "x",
        y_key: str | None = "y",
        mmap: bool = True,
        normalize: bool = False,
        classes: Any = None,
    ) -> None:
        self.train_spec, self.val_spec = train, val
        self.x_key, self.y_key = x_key, y_key
        self.mmap, self.normalize = mmap, normalize
        self.classes = classes
        self._loaded = False

    def setup(self) -> None:
        if self._loaded:
            return
        for name, value in (("data.mmap", self.mmap), ("data.normalize", self.normalize)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        classes = check_classes(self.classes)
        x, y, name = self._open(self.train_spec, "data.train")
        y = None if y is None else check_labels(y, "data.train", None if classes is None else len(classes), classes=classes)
        num_classes = len(classes) if classes is not None else None if y is None else (int(y.max()) + 1 if y.size else 0)
        stats = array_stats(x) if self.normalize else None
        self.train = self._dataset(x, y, stats)
        self.val = None
        if self.val_spec is not None:
            vx, vy, _ = self._open(self.val_spec, "data.val")
            if tuple(vx.shape[1:]) != tuple(x.shape[1:]):
                raise ConfigError(f"data.val: rows of shape {tuple(vx.shape[1:])} do not match the training rows {tuple(x.shape[1:])}")
            vy = None if vy is None else check_labels(vy, "data.val", num_classes, classes=classes)
            self.val = self._dataset(vx, vy, stats)
        self.meta = source_meta(name, self.train, num_classes, classes)
        self._loaded = True

    def _open(self, spec: Any, setting: str) -> tuple[np.ndarray, np.ndarray | None, str]:
        x, y, name = open_arrays(spec, setting, self.x_key, self.y_key, self.mmap)
        if x.ndim < 2:
            raise ConfigError(f"{setting}: features must be [rows, ...] with at least one feature axis, got shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise ConfigError(f"{setting}: features must be numbers, got dtype {x.dtype}")
        if y is not None and (y.ndim != 1 or y.shape[0] != x.shape[0]):
            raise ConfigError(f"{setting}: x has {x.shape[0]} rows but y has shape {y.shape} (one label per row expected)")
        return x, y, name

    def _dataset(self, x: np.ndarray, y: np.ndarray | None, stats: tuple[float, float] | None) -> BatchDataset:
        if self.mmap:
            return MappedArrays(x, y, *(stats or (None, None)))
        a = np.array(x, dtype=np.float32, order="C")
        if stats is not None:
            standardise(a, *stats)
        return ArrayDataset(torch.from_numpy(a), None if y is None else torch.from_numpy(y))

    def __repr__(self) -> str:
        return f"Arrays(train={self.train_spec!r}, val={self.val_spec!r}, mmap={self.mmap!r})"
