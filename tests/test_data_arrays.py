"""`Arrays`: .npy/.npz sources, memory-mapped and in memory, through `Batches` and a real DataLoader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from selectkit.data import ArrayDataset, Arrays, Batches, MappedArrays, WithSynthetic, batch_collate
from selectkit.errors import ConfigError


@pytest.fixture
def files(tmp_path: Path) -> dict:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (120, 2, 5), dtype=np.uint8)
    y = rng.integers(0, 4, 120)
    vx = rng.integers(0, 256, (30, 2, 5), dtype=np.uint8)
    vy = rng.integers(0, 4, 30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "pool.npz", x=x, y=y)
    np.savez(tmp_path / "val.npz", x=vx, y=vy)
    np.savez(tmp_path / "feats.npz", feats=x.astype(np.float32), target=y, x=x)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    return {"dir": tmp_path, "x": x, "y": y, "vx": vx, "vy": vy}


def _batches(dataset, items, batch_size=16, workers=0):
    loader = DataLoader(Batches(dataset), batch_size=batch_size, sampler=items, collate_fn=batch_collate, num_workers=workers)
    return list(loader)


def _items(n: int, seed: int = 0) -> list:
    order = np.random.default_rng(seed).permutation(n)
    return [(int(i), 1.0, 1) for i in order] + [(int(order[0]), 0.0, 0)] * 3


def _setup(**kw) -> Arrays:
    source = Arrays(**kw)
    source.setup()
    return source


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("form", ["npz", "npy"])
def test_mapped_batches_equal_in_memory_batches(files, form, normalize):
    d = files["dir"]
    train = str(d / "pool.npz") if form == "npz" else {"x": str(d / "x.npy"), "y": str(d / "y.npy")}
    mapped = _setup(train=train, val=str(d / "val.npz"), normalize=normalize)
    memory = _setup(train=train, val=str(d / "val.npz"), normalize=normalize, mmap=False)
    assert isinstance(mapped.train, MappedArrays) and isinstance(memory.train, ArrayDataset)
    items = _items(120)
    for a, b in zip(_batches(mapped.train, items), _batches(memory.train, items), strict=True):
        assert a["x"].dtype == torch.float32 and a["y"].dtype == torch.int64
        for key in ("x", "y", "index", "weight", "mask"):
            assert torch.equal(a[key], b[key]), key
    expected = files["x"].astype(np.float32)
    if normalize:
        expected = (expected - np.float32(expected.mean(dtype=np.float64))) / np.float32(expected.std(dtype=np.float64))
    ids = np.array([5, 119, 5, 0])
    np.testing.assert_allclose(mapped.train.gather(torch.from_numpy(ids))["x"].numpy(), expected[ids], rtol=1e-6, atol=1e-6)
    assert mapped.train.gather(torch.from_numpy(ids))["y"].tolist() == files["y"][ids].tolist()
    for a, b in zip(_batches(mapped.val, list(range(30))), _batches(memory.val, list(range(30))), strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    if normalize:
        xs = torch.cat([b["x"] for b in _batches(mapped.train, list(range(120)))])
        assert abs(float(xs.mean())) < 1e-5 and abs(float(xs.std(unbiased=False)) - 1) < 1e-4


def test_mapped_rows_stay_on_disk(files):
    d = files["dir"]
    npy = _setup(train={"x": str(d / "x.npy"), "y": str(d / "y.npy")})
    npz = _setup(train=str(d / "pool.npz"))
    for source, path in ((npy, d / "x.npy"), (npz, d / "pool.npz")):
        x = source.train.x
        assert isinstance(x, np.memmap) and not x.flags.writeable and x.mode == "r"
        assert Path(x.filename) == path.resolve() and source.train.mapped and source.train.nbytes() is None
        assert source.train.labels().dtype == np.int64 and not isinstance(source.train.labels(), np.memmap)
        np.testing.assert_array_equal(np.asarray(x), files["x"])
    assert npz.train.x.offset > 0
    _batches(npz.train, _items(120))
    assert isinstance(npz.train.x, np.memmap), "gathering must not load the array"
    memory = _setup(train=str(d / "pool.npz"), mmap=False)
    assert memory.train.nbytes() == 120 * 10 * 4 + 120 * 8


def test_fortran_ordered_and_float_members_map(files):
    d = files["dir"]
    xf = np.asfortranarray(files["x"].astype(np.float64))
    np.savez(d / "fortran.npz", x=xf, y=files["y"])
    source = _setup(train=str(d / "fortran.npz"))
    assert source.train.x.flags.f_contiguous
    ids = torch.tensor([3, 1, 3])
    np.testing.assert_array_equal(source.train.gather(ids)["x"].numpy(), xf[[3, 1, 3]].astype(np.float32))
    keys = _setup(train=str(d / "feats.npz"), x_key="feats", y_key="target")
    np.testing.assert_array_equal(keys.train.gather(ids)["x"].numpy(), files["x"][[3, 1, 3]].astype(np.float32))


def test_meta_and_idempotent_setup(files):
    d = files["dir"]
    source = Arrays(train=str(d / "pool.npz"), val=str(d / "val.npz"))
    source.setup()
    train = source.train
    source.setup()
    assert source.train is train
    assert source.meta == {
        "name": "pool",
        "num_classes": 4,
        "classes": None,
        "input_shape": (2, 5),
        "train_counts": np.bincount(files["y"], minlength=4).tolist(),
    }


def test_unlabelled_pools(files):
    d = files["dir"]
    for source in (_setup(train=str(d / "x.npy")), _setup(train={"x": str(d / "x.npy")}), _setup(train=str(d / "feats.npz"), x_key="feats"), _setup(train=str(d / "pool.npz"), y_key=None)):
        assert source.train.labels() is None and source.meta["num_classes"] is None and source.meta["train_counts"] is None
        (batch,) = _batches(source.train, [4, 2], batch_size=2)
        assert set(batch) == {"x", "index", "weight", "mask"} and batch["x"].shape == (2, 2, 5)


def test_with_synthetic_over_a_mapped_base(files):
    d = files["dir"]
    source = _setup(train={"x": str(d / "x.npy"), "y": str(d / "y.npy")})
    syn = WithSynthetic(source.train, torch.full((4, 2, 5), -1.0), torch.tensor([3, 2, 1, 0]))
    assert isinstance(syn.base.x, np.memmap) and len(syn) == 124
    items = [121, 0, 123, 0, 119, 120]
    (batch,) = _batches(syn, items, batch_size=6)
    assert batch["y"].tolist() == [2, int(files["y"][0]), 0, int(files["y"][0]), int(files["y"][119]), 3]
    assert float(batch["x"][0].max()) == -1.0 and torch.equal(batch["x"][4], torch.from_numpy(files["x"][119].astype(np.float32)))
    assert isinstance(syn.base.x, np.memmap)
    np.testing.assert_array_equal(syn.labels()[-4:], [3, 2, 1, 0])


def test_workers_read_the_map(files):
    d = files["dir"]
    source = _setup(train=str(d / "pool.npz"))
    items = _items(120, seed=3)
    for a, b in zip(_batches(source.train, items), _batches(source.train, items, workers=2), strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["index"], b["index"]) and torch.equal(a["mask"], b["mask"])


def test_compressed_archives_cannot_be_mapped(files):
    packed = str(files["dir"] / "packed.npz")
    with pytest.raises(ConfigError, match=r"data\.mmap.*savez_compressed") as err:
        _setup(train=packed)
    assert "\n" not in str(err.value)
    source = _setup(train=packed, mmap=False)
    np.testing.assert_array_equal(source.train.x.numpy(), files["x"].astype(np.float32))


def _bad(tmp: Path) -> dict:
    np.save(tmp / "short_y.npy", np.zeros(5, dtype=np.int64))
    np.save(tmp / "float_y.npy", np.full(120, 0.5))
    np.save(tmp / "neg_y.npy", np.full(120, -1))
    np.save(tmp / "flat.npy", np.zeros(120))
    np.save(tmp / "text.npy", np.array(["a"] * 120))
    np.savez(tmp / "wide_val.npz", x=np.zeros((3, 2, 6)), y=np.zeros(3, dtype=int))
    np.savez(tmp / "big_val.npz", x=np.zeros((3, 2, 5)), y=np.array([0, 1, 4]))
    (tmp / "junk.npz").write_bytes(b"not a zip")
    return {}


@pytest.mark.parametrize(
    "settings, setting",
    [
        ({"train": "missing.npz"}, "data.train"),
        ({"train": {"x": "x.npy", "y": "missing.npy"}}, "data.train.y"),
        ({"train": {"x": "x.npy", "y": "short_y.npy"}}, "data.train"),
        ({"train": {"x": "x.npy", "y": "float_y.npy"}}, "data.train"),
        ({"train": {"x": "x.npy", "y": "neg_y.npy"}}, "data.train"),
        ({"train": {"x": "x.npy", "labels": "y.npy"}}, "data.train"),
        ({"train": {"x": "pool.npz"}}, "data.train.x"),
        ({"train": "flat.npy"}, "data.train"),
        ({"train": "text.npy"}, "data.train"),
        ({"train": "x.csv"}, "data.train"),
        ({"train": 3}, "data.train"),
        ({"train": "junk.npz"}, "data.train"),
        ({"train": "pool.npz", "x_key": "images"}, "data.x_key"),
        ({"train": "pool.npz", "y_key": "labels"}, "data.y_key"),
        ({"train": "pool.npz", "val": "wide_val.npz"}, "data.val"),
        ({"train": "pool.npz", "val": "big_val.npz"}, "data.val"),
        ({"train": "pool.npz", "val": "missing.npz"}, "data.val"),
        ({"train": "pool.npz", "mmap": "yes"}, "data.mmap"),
        ({"train": "pool.npz", "normalize": 1}, "data.normalize"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_setting(files, settings, setting):
    d = files["dir"]
    _bad(d)

    def place(v):
        if isinstance(v, dict):
            return {k: str(d / p) for k, p in v.items()}
        return str(d / v) if isinstance(v, str) else v

    settings = {k: place(v) if k in ("train", "val") else v for k, v in settings.items()}
    with pytest.raises(ConfigError) as err:
        _setup(**settings)
    msg = str(err.value)
    assert msg.startswith((setting + ":", setting + " ")) and "\n" not in msg, msg


def test_out_of_range_ids_are_refused(files):
    source = _setup(train=str(files["dir"] / "pool.npz"))
    with pytest.raises(IndexError):
        source.train.gather(torch.tensor([0, 120]))
