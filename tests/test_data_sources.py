"""Data sources named by ``_target_``: the built-in datasets and `Arrays`, built by Hydra, read through
`Batches` and a real DataLoader; every source and dataset kind through the shared checks
(`selectkit.testing.check_source`)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data import Dataset as TorchData

import selectkit.data as data
from selectkit.data import ArrayDataset, Arrays, Batches, DataSource, Digits, FashionMNIST, TextPairs, TorchDataset, WordNet, batch_collate, build_datasets
from selectkit.data.wordnet import find_wordnet
from selectkit.errors import ConfigError, DataNotFoundError
from selectkit.testing import check_batch_dataset, check_source

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not all((DEBIAN_DIR / f).is_file() for f in data.FASHION_FILES.values()),
    reason=f"Fashion-MNIST is not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)



def _have_wordnet() -> bool:
    try:
        find_wordnet()
    except ConfigError:
        return False
    return True


needs_wordnet = pytest.mark.skipif(not _have_wordnet(), reason="WordNet's files are not installed (apt-get install wordnet-base)")


def _epoch(dataset, batch_size=64, seed=0):
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    return list(DataLoader(Batches(dataset), batch_size=batch_size, sampler=order, collate_fn=batch_collate))


def _write_fashion(folder: Path, n_train: int, n_test: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)), ("labels-idx1", (np.arange(n) % 10).astype(np.uint8))):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
            with gzip.open(folder / f"{split}-{kind}-ubyte.gz", "wb") as fh:
                fh.write(header + array.tobytes())


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "STANDARD_DIRS", [tmp_path / "standard"])
    monkeypatch.setenv("SELECTKIT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _write_fashion(tmp_path / "fashion-mnist", 60, 20)
    data._cache_clear()
    yield tmp_path / "fashion-mnist"
    data._cache_clear()


def test_digits_source_is_build_datasets():
    source = instantiate(OmegaConf.create({"_target_": "selectkit.data.Digits", "val_fraction": 0.2, "seed": 3, "imbalance": {"classes": [1], "keep_fraction": 0.5}}))
    assert isinstance(source, DataSource)
    source.setup()
    train, val, meta = build_datasets("digits", val_fraction=0.2, seed=3, imbalance={"classes": [1], "keep_fraction": 0.5})
    assert source.meta == meta and torch.equal(source.train.x, train.x) and torch.equal(source.val.y, val.y)
    first = source.train
    source.setup()
    assert source.train is first
    seen = torch.cat([b["index"] for b in _epoch(source.train)])
    assert sorted(seen.tolist()) == list(range(len(train)))
    for b in _epoch(source.train)[:3]:
        assert torch.equal(b["x"], train.x[b["index"]]) and torch.equal(b["y"], train.y[b["index"]])
    assert source.meta["train_counts"][1] == round(0.5 * build_datasets("digits", val_fraction=0.2, seed=3)[2]["train_counts"][1])


def test_fashion_source_from_a_data_dir(fake_fashion):
    source = instantiate(OmegaConf.create({"_target_": "selectkit.data.FashionMNIST", "data_dir": str(fake_fashion.parent), "val_fraction": 0.5}))
    source.setup()
    assert isinstance(source.train, ArrayDataset) and len(source.train) == 30 and len(source.val) == 30
    assert source.meta["name"] == "fashion_mnist" and source.meta["input_shape"] == (1, 28, 28) and len(source.meta["classes"]) == 10
    batches = _epoch(source.train, batch_size=16)
    assert [b["x"].shape[0] for b in batches] == [16, 14]
    assert abs(float(torch.cat([b["x"] for b in batches]).mean())) < 1e-4
    official = FashionMNIST(data_dir=str(fake_fashion))
    official.setup()
    assert len(official.train) == 60 and len(official.val) == 20


def test_source_settings_errors_name_the_setting(fake_fashion, tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.val_fraction"):
        Digits(val_fraction=1.5).setup()
    with pytest.raises(ConfigError, match=r"^data\.imbalance\.ratio"):
        Digits(imbalance={"ratio": 0.1}).setup()
    with pytest.raises(DataNotFoundError, match=r"data\.data_dir") as err:
        FashionMNIST(data_dir=str(tmp_path / "nowhere")).setup()
    assert "\n" not in str(err.value)


def test_arrays_source_from_yaml(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((50, 4)).astype(np.float32), rng.integers(0, 3, 50)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "val.npz", x=x[:10], y=y[:10])
    cfg = OmegaConf.create(
        f"""
        _target_: selectkit.data.Arrays
        train: {{x: {tmp_path / 'x.npy'}, y: {tmp_path / 'y.npy'}}}
        val: {tmp_path / 'val.npz'}
        mmap: true
        """
    )
    source = instantiate(cfg)
    source.setup()
    assert isinstance(source.train.x, np.memmap) and source.meta["num_classes"] == 3 and source.meta["input_shape"] == (4,)
    for b in _epoch(source.train, batch_size=16):
        np.testing.assert_array_equal(b["x"].numpy(), x[b["index"].numpy()])
        np.testing.assert_array_equal(b["y"].numpy(), y[b["index"].numpy()])
    assert len(_epoch(source.val)) == 1


@needs_fashion
def test_real_fashion_source_through_a_dataloader():
    source = FashionMNIST(val_fraction=0.0)
    source.setup()
    assert len(source.train) == 60000 and len(source.val) == 10000 and source.meta["train_counts"] == [6000] * 10
    (batch,) = list(DataLoader(Batches(source.train), batch_size=256, sampler=list(range(256)), collate_fn=batch_collate))
    assert batch["x"].shape == (256, 1, 28, 28) and torch.equal(batch["x"], source.train.x[:256])
    assert source.train.features(np.array([0, 1])).shape == (2, 784)


# ----------------------------------------------------------------------------------------- shared checks
class _Rows(TorchData):
    """A user's map-style Dataset of (x, label) items, labels also in ``targets``."""

    def __init__(self, n: int = 30, labelled: bool = True) -> None:
        self.x = torch.arange(n * 6, dtype=torch.float64).reshape(n, 2, 3)
        self.targets = np.arange(n) % 3
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return (self.x[i], int(self.targets[i])) if self.labelled else self.x[i]


def _arrays(tmp_path, form: str, mmap: bool):
    rng = np.random.default_rng(7)
    x, y = rng.integers(0, 255, (40, 2, 3)).astype(np.uint8), rng.integers(0, 4, 40)
    if form == "npz":
        np.savez(tmp_path / "pool.npz", x=x, y=y)
        return Arrays(train=str(tmp_path / "pool.npz"), val=str(tmp_path / "pool.npz"), mmap=mmap, normalize=True)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    if form == "unlabelled":
        return Arrays(train=str(tmp_path / "x.npy"), mmap=mmap)
    return Arrays(train={"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}, mmap=mmap)


SOURCES = {
    "digits": lambda tmp_path, fashion: Digits(val_fraction=0.2),
    "fashion": lambda tmp_path, fashion: FashionMNIST(data_dir=str(fashion), val_fraction=0.5),
    "arrays-npz-mmap": lambda tmp_path, fashion: _arrays(tmp_path, "npz", True),
    "arrays-npz-memory": lambda tmp_path, fashion: _arrays(tmp_path, "npz", False),
    "arrays-npy-mmap": lambda tmp_path, fashion: _arrays(tmp_path, "npy", True),
    "arrays-unlabelled": lambda tmp_path, fashion: _arrays(tmp_path, "unlabelled", False),
    "torch-items": lambda tmp_path, fashion: TorchDataset(_Rows(), val_dataset=_Rows(9)),
    "torch-targets": lambda tmp_path, fashion: TorchDataset(_Rows(labelled=False), labels="targets", classes=["a", "b", "c"]),
    "torch-unlabelled": lambda tmp_path, fashion: TorchDataset(_Rows(labelled=False)),
    "torch-tensors": lambda tmp_path, fashion: TorchDataset(TensorDataset(torch.ones(12, 5), torch.arange(12) % 2)),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_passes_the_shared_checks(name, tmp_path, fake_fashion):
    """Every source answers a gather of no ids (a batch without base or without synthetic rows) with
    the keys, trailing shapes and dtypes of any other batch, and ``features`` of no ids with ``[0, d]``."""
    source = SOURCES[name](tmp_path, fake_fashion.parent)
    check_source(source)
    empty = source.train.gather(torch.empty(0, dtype=torch.int64))
    assert tuple(empty["x"].shape) == (0, *source.meta["input_shape"]) and empty["x"].dtype == torch.float32
    assert ("y" in empty) == (source.train.labels() is not None)


@needs_wordnet
def test_wordnet_source_passes_the_shared_checks():
    source = WordNet(pairs=6, val_pairs=2, max_length=8)
    check_source(source)
    assert source.train.gather(torch.empty(0, dtype=torch.int64))["query"].dtype == torch.bool


def test_datasets_with_synthetic_rows_pass_the_shared_checks(tmp_path):
    """`WithSynthetic` over a memory-mapped and over a torch base, `ArrayDataset` with synthetic rows and
    `TextPairs`: the base part or the synthetic part of a batch may be empty."""
    mapped = _arrays(tmp_path, "npy", True)
    mapped.setup()
    torch_rows = TorchDataset(_Rows())
    torch_rows.setup()
    digits = Digits()
    digits.setup()
    for name, base in (("mapped", mapped.train), ("torch", torch_rows.train), ("memory", digits.train)):
        shape = tuple(base.input_shape)
        grown = base.with_synthetic(torch.zeros(3, *shape), torch.tensor([0, 1, 0]))
        check_batch_dataset(grown, f"{name}+synthetic")
        only_synthetic = grown.gather(torch.tensor([len(base), len(base) + 2]))
        only_base = grown.gather(torch.tensor([1, 0]))
        assert only_synthetic["x"].shape == only_base["x"].shape == (2, *shape)
        assert only_synthetic["y"].tolist() == [0, 0] and grown.features(np.array([0, 1])).shape == (2, int(np.prod(shape)))
    check_batch_dataset(TextPairs(torch.ones(6, 2, 4)), "text pairs")
