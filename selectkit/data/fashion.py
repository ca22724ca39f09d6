"""Fashion-MNIST from its four IDX files (no torchvision): parsing, discovery and decoding.

`load_fashion_mnist` finds the files (`candidate_dirs`), decodes them once per process and returns
float32 images and int64 labels; `selectkit.data.FashionMNIST` is the data source built on it.
"""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

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

#: IDX element-type byte -> numpy dtype (multi-byte types are big-endian).
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


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
    then ``selectkit.data.STANDARD_DIRS`` (read at each call, so it can be replaced)."""
    import selectkit.data as package

    dirs: list[Path] = []
    if data_dir:
        base = Path(data_dir).expanduser()
        dirs += [base, base / "fashion-mnist", base / "FashionMNIST" / "raw"]
    env = os.environ.get("SELECTKIT_DATA")
    if env:
        base = Path(env).expanduser()
        dirs += [base, base / "fashion-mnist"]
    dirs.append(Path.home() / USER_CACHE)
    dirs += [Path(d) for d in package.STANDARD_DIRS]
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
