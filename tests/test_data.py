"""Datasets: IDX parsing, Fashion-MNIST discovery and loading, batch gathering, digits, imbalance."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import selectkit.data as data
from selectkit.data import ArrayDataset, batch_collate, build_datasets, load_digits_dataset, make_imbalanced, read_idx
from selectkit.errors import ConfigError, DataNotFoundError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not all((DEBIAN_DIR / f).is_file() for f in data.FASHION_FILES.values()),
    reason=f"Fashion-MNIST is not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.tobytes()


def _write_idx(path: Path, array: np.ndarray) -> Path:
    raw = _idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)
    return path


@pytest.fixture
def no_standard_places(tmp_path, monkeypatch):
    """Hide every place Fashion-MNIST could be found besides what the test points at."""
    monkeypatch.setattr(data, "STANDARD_DIRS", [tmp_path / "standard"])
    monkeypatch.setenv("SELECTKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data._cache_clear()
    yield tmp_path
    data._cache_clear()


# ----------------------------------------------------------------------------------------- IDX
def test_idx_round_trip_plain_and_gzipped(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, -1, 100000], dtype=">i4")
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "x.idx", images)), images)
    np.testing.assert_array_equal(read_idx(_write_idx(tmp_path / "x.idx.gz", images)), images)
    got = read_idx(_write_idx(tmp_path / "y.idx.gz", labels))
    assert got.shape == (3,) and got.tolist() == [7, -1, 100000]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: b"\x01" + raw[1:], "bad magic"),
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "element type"),
        (lambda raw: raw[:6], "truncated"),
        (lambda raw: raw[:-1], "data bytes"),
        (lambda raw: raw + b"\x00", "data bytes"),
    ],
)
def test_corrupted_idx_is_refused_in_one_line(tmp_path, mutate, message):
    raw = _idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    path = tmp_path / "bad.idx"
    path.write_bytes(mutate(raw))
    with pytest.raises(ConfigError, match=message) as err:
        read_idx(path)
    assert "\n" not in str(err.value) and "data.data_dir" in str(err.value)


def test_fake_fashion_found_in_configured_subfolder(no_standard_places):
    rng = np.random.default_rng(0)
    folder = no_standard_places / "mine" / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for split, n in (("train", 20), ("t10k", 10)):
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    out = data.load_fashion_mnist(no_standard_places / "mine")
    x, y = out["train"]
    assert x.shape == (20, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == np.int64 and out["test"][0].shape == (10, 1, 28, 28)
    xn, _ = data.load_fashion_mnist(no_standard_places / "mine", normalize=True)["train"]
    assert abs(float(xn.mean())) < 1e-5 and abs(float(xn.std()) - 1) < 1e-4
    assert x.max() <= 1, "a normalised load must not touch arrays handed out earlier"


def test_missing_data_names_the_setting(no_standard_places):
    with pytest.raises(DataNotFoundError, match=r"data\.data_dir") as err:
        data.load_fashion_mnist(no_standard_places / "nodata")
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg
    for place in ("nodata", "env", "home", "standard"):
        assert str(no_standard_places / place) in msg
    with pytest.raises(DataNotFoundError):
        build_datasets("fashion_mnist", data_dir=None)


@needs_fashion
def test_real_fashion_mnist():
    out = data.load_fashion_mnist(None)
    x, y = out["train"]
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.dtype == np.int64 and set(np.unique(y).tolist()) == set(range(10))
    assert out["test"][0].shape == (10000, 1, 28, 28) and len(out["classes"]) == 10
    train, val, meta = build_datasets("fashion_mnist", None, val_fraction=0.1, seed=0, normalize=True)
    assert len(train) == 54000 and len(val) == 6000
    assert meta == {**meta, "name": "fashion_mnist", "num_classes": 10, "input_shape": (1, 28, 28)}
    assert abs(float(train.x.mean())) < 1e-3


# ----------------------------------------------------------------------------------------- batches
def _toy(n: int = 10) -> ArrayDataset:
    return ArrayDataset(torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2), torch.arange(n) % 3)


def test_getitem_and_getitems_with_ints():
    ds = _toy()
    x, y, i = ds[4]
    assert torch.equal(x, ds.x[4]) and int(y) == 1 and i == 4
    batch = ds.__getitems__([3, 0, 7])
    assert set(batch) == {"x", "y", "index", "weight", "mask"} and batch["mask"].tolist() == [True] * 3
    assert batch["index"].tolist() == [3, 0, 7] and batch["index"].dtype == torch.int64
    assert torch.equal(batch["x"], ds.x[[3, 0, 7]]) and batch["y"].tolist() == [0, 0, 1]
    assert batch["weight"].dtype == torch.float32 and batch["weight"].tolist() == [1.0, 1.0, 1.0]


def test_getitems_with_weighted_pairs():
    ds = _toy()
    batch = ds.__getitems__([(9, 0.5), (2, 2.0), (2, 0.0)])
    assert batch["index"].tolist() == [9, 2, 2] and batch["index"].dtype == torch.int64
    assert batch["weight"].tolist() == [0.5, 2.0, 0.0] and batch["weight"].dtype == torch.float32
    assert torch.equal(batch["x"], ds.x[[9, 2, 2]])


def test_dataloader_gathers_whole_batches():
    ds = _toy()
    loader = DataLoader(ds, batch_size=4, sampler=[(i, 1.0 + i) for i in range(10)], collate_fn=batch_collate)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[-1]["weight"].tolist() == [9.0, 10.0]


def test_with_synthetic_appends_once():
    ds = _toy(5)
    syn = ds.with_synthetic(torch.full((2, 1, 2, 2), -1.0), torch.tensor([2, 1]))
    assert len(ds) == 5 and len(syn) == 7 and syn.n_base == 5 and syn.num_synthetic == 2
    batch = syn.__getitems__([6, 0, 5])
    assert batch["y"].tolist() == [1, 0, 2] and float(batch["x"][0].max()) == -1.0
    more = syn.with_synthetic(torch.zeros(1, 1, 2, 2), torch.tensor([0]))
    assert len(more) == 8 and more.n_base == 5
    with pytest.raises(ConfigError, match="with_synthetic"):
        ds.with_synthetic(torch.zeros(2, 4), torch.tensor([0, 1]))


# ----------------------------------------------------------------------------------------- digits
def test_digits_split_is_stratified_and_deterministic():
    a = load_digits_dataset(0.25, seed=3)
    b = load_digits_dataset(0.25, seed=3)
    c = load_digits_dataset(0.25, seed=4)
    (xa, ya), (va, vya) = a["train"], a["val"]
    assert xa.shape[1:] == (1, 8, 8) and xa.dtype == np.float32 and 0 <= xa.min() and xa.max() <= 1
    assert len(ya) + len(vya) == 1797
    np.testing.assert_array_equal(xa, b["train"][0])
    np.testing.assert_array_equal(vya, b["val"][1])
    assert not np.array_equal(va, c["val"][0])
    share = np.bincount(vya, minlength=10) / np.bincount(np.concatenate([ya, vya]), minlength=10)
    assert np.all(np.abs(share - 0.25) < 0.02)


def test_build_digits_meta_and_normalisation():
    train, val, meta = build_datasets("digits", val_fraction=0.2, seed=0, normalize=True)
    assert meta["name"] == "digits" and meta["num_classes"] == 10 and meta["input_shape"] == (1, 8, 8)
    assert sum(meta["train_counts"]) == len(train) and len(train) + len(val) == 1797
    assert abs(float(train.x.mean())) < 1e-4 and abs(float(train.x.std()) - 1) < 1e-2
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64


def test_unknown_dataset_lists_names():
    with pytest.raises(ConfigError, match=r"data\.name must be one of fashion_mnist, digits") as err:
        build_datasets("cifar")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [-0.1, 1.0, "a"])
def test_bad_val_fraction(bad):
    with pytest.raises(ConfigError, match=r"data\.val_fraction"):
        build_datasets("digits", val_fraction=bad)


# ----------------------------------------------------------------------------------------- imbalance
def test_make_imbalanced_counts_and_determinism():
    y = np.repeat(np.arange(5), 100)
    keep = make_imbalanced(y, [1, 3], 0.1, seed=0)
    counts = np.bincount(y[keep], minlength=5)
    assert counts.tolist() == [100, 10, 100, 10, 100]
    assert np.all(np.diff(keep) > 0)
    np.testing.assert_array_equal(keep, make_imbalanced(y, [1, 3], 0.1, seed=0))
    assert not np.array_equal(keep, make_imbalanced(y, [1, 3], 0.1, seed=1))
    assert np.bincount(y[make_imbalanced(y, [2], 0.001, seed=0)], minlength=5)[2] == 1
    assert np.bincount(y[make_imbalanced(y, [2], 0.0, seed=0)], minlength=5)[2] == 0


@pytest.mark.parametrize(
    "classes, fraction, setting",
    [([1], 1.5, "keep_fraction"), ([11], 0.1, "classes"), (["a"], 0.1, "classes")],
)
def test_make_imbalanced_bad_settings(classes, fraction, setting):
    with pytest.raises(ConfigError, match=rf"data\.imbalance\.{setting}"):
        make_imbalanced(np.repeat(np.arange(5), 10), classes, fraction, seed=0)


def test_build_imbalanced_digits():
    train, val, meta = build_datasets("digits", seed=0, imbalance={"classes": [0, 1], "keep_fraction": 0.1})
    _, full_val, full_meta = build_datasets("digits", seed=0)
    counts, full = meta["train_counts"], full_meta["train_counts"]
    assert counts[0] == round(0.1 * full[0]) and counts[1] == round(0.1 * full[1]) and counts[2:] == full[2:]
    assert len(val) == len(full_val)
    with pytest.raises(ConfigError, match=r"data\.imbalance\.ratio"):
        build_datasets("digits", imbalance={"classes": [0], "ratio": 0.1})
