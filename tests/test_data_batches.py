"""Batch gathering: sampler items, `Batches` in front of real DataLoaders, `ArrayDataset`, `WithSynthetic`."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from selectkit.data import ArrayDataset, BatchDataset, Batches, WithSynthetic, batch_collate, split_items
from selectkit.errors import ConfigError


def _toy(n: int = 10, labelled: bool = True) -> ArrayDataset:
    x = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2)
    return ArrayDataset(x, torch.arange(n) % 3 if labelled else None)


class Squares(BatchDataset):
    """A generic (not in-memory) BatchDataset: row i is filled with i*i, label i % 2; counts its calls."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0

    def __len__(self) -> int:
        return self.n

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3,)

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        return {"x": (ids.float() ** 2)[:, None].repeat(1, 3), "y": ids % 2}

    def labels(self) -> np.ndarray:
        return np.arange(self.n) % 2


# ----------------------------------------------------------------------------------------- items
def test_split_items_ints_pairs_triples_and_tensors():
    idx, w, m = split_items([4, 0, 4])
    assert idx.dtype == torch.int64 and idx.tolist() == [4, 0, 4]
    assert w.dtype == torch.float32 and w.tolist() == [1.0] * 3 and m.dtype == torch.bool and m.all()
    idx, w, m = split_items([(7, 0.5, 1), (2, 0.0, 0), (3, 2.0, 1)])
    assert idx.tolist() == [7, 2, 3] and w.tolist() == [0.5, 0.0, 2.0] and m.tolist() == [True, False, True]
    idx, w, m = split_items([(9, 0.25), (1, 3.0)])
    assert idx.tolist() == [9, 1] and w.tolist() == [0.25, 3.0] and m.tolist() == [True, True]
    idx, w, m = split_items(torch.tensor([5, 6], dtype=torch.int32))
    assert idx.dtype == torch.int64 and idx.tolist() == [5, 6] and m.tolist() == [True, True]
    idx, w, m = split_items([])
    assert idx.shape == (0,) and w.shape == (0,) and m.shape == (0,)
    with pytest.raises(ConfigError, match="triples"):
        split_items([(1, 2, 3, 4)])


def test_batches_through_a_dataloader_with_weights_and_padding():
    ds = _toy()
    items = [(i, 0.5 * i, int(i < 8)) for i in (3, 9, 0, 9, 5)]
    batches = list(DataLoader(Batches(ds), batch_size=2, sampler=items, collate_fn=batch_collate))
    assert [b["index"].tolist() for b in batches] == [[3, 9], [0, 9], [5]]
    assert [b["mask"].tolist() for b in batches] == [[True, False], [True, False], [True]]
    assert batches[0]["weight"].tolist() == [1.5, 4.5] and batches[1]["weight"].dtype == torch.float32
    for b in batches:
        assert set(b) == {"x", "y", "index", "weight", "mask"}
        assert torch.equal(b["x"], ds.x[b["index"]]) and torch.equal(b["y"], ds.y[b["index"]])


def test_batches_in_worker_processes_match_the_main_process():
    ds = _toy(50)
    items = [(i, float(i % 4), int(i % 7 != 0)) for i in np.random.default_rng(0).permutation(50).tolist()]
    main = list(DataLoader(Batches(ds), batch_size=8, sampler=items, collate_fn=batch_collate))
    workers = list(DataLoader(Batches(ds), batch_size=8, sampler=items, collate_fn=batch_collate, num_workers=2))
    assert len(main) == len(workers) == 7
    for a, b in zip(main, workers):
        assert type(b) is dict and list(a) == list(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key])


def test_batches_pickle_and_single_rows():
    ds = _toy()
    wrapped = pickle.loads(pickle.dumps(Batches(ds)))
    assert len(wrapped) == 10
    assert torch.equal(wrapped.__getitems__([2, 1])["x"], ds.x[[2, 1]])
    row = Batches(ds)[4]
    assert torch.equal(row["x"], ds.x[4]) and int(row["y"]) == 1 and int(row["index"]) == 4 and bool(row["mask"])


# ----------------------------------------------------------------------------------------- in memory
def test_array_dataset_is_a_batch_dataset():
    ds = _toy()
    assert isinstance(ds, BatchDataset) and ds.input_shape == (1, 2, 2) and ds.nbytes() == 10 * 4 * 4 + 10 * 8
    got = ds.gather(torch.tensor([7, 7, 1]))
    assert got["y"].tolist() == [1, 1, 1] and torch.equal(got["x"], ds.x[[7, 7, 1]])
    np.testing.assert_array_equal(ds.labels(), np.arange(10) % 3)
    feats = ds.features(np.array([2, 0]))
    assert feats.shape == (2, 4) and feats.dtype == np.float32 and feats[0].tolist() == [8, 9, 10, 11]
    moved = ds.to("cpu")
    assert ds.device == moved.device == torch.device("cpu") and Squares(2).device == torch.device("cpu")
    assert isinstance(moved, ArrayDataset) and torch.equal(moved.gather(torch.tensor([3]))["x"], ds.x[[3]])


def test_unlabelled_array_dataset_has_no_y():
    ds = _toy(labelled=False)
    assert ds.labels() is None and set(ds.gather(torch.tensor([1, 2]))) == {"x"}
    x, i = ds[3]
    assert torch.equal(x, ds.x[3]) and i == 3
    with pytest.raises(ConfigError, match="with_synthetic"):
        ds.with_synthetic(torch.zeros(1, 1, 2, 2), torch.tensor([0]))
    with pytest.raises(ConfigError, match="with_synthetic"):
        WithSynthetic(ds, torch.zeros(1, 1, 2, 2), torch.tensor([0]))


# ----------------------------------------------------------------------------------------- synthetic
def test_with_synthetic_over_a_generic_base_gathers_each_part_once():
    base = Squares(6)
    syn = base.with_synthetic(torch.full((3, 3), -1.0) * torch.arange(1, 4)[:, None], torch.tensor([5, 6, 7]))
    assert isinstance(syn, WithSynthetic) and len(syn) == 9 and syn.n_base == 6 and syn.num_synthetic == 3
    got = syn.gather(torch.tensor([7, 2, 6, 2, 8, 0]))
    assert base.calls == 1
    assert got["y"].tolist() == [6, 0, 5, 0, 7, 0]
    assert got["x"][:, 0].tolist() == [-2.0, 4.0, -1.0, 4.0, -3.0, 0.0]
    np.testing.assert_array_equal(syn.labels(), [0, 1, 0, 1, 0, 1, 5, 6, 7])
    assert syn.gather(torch.tensor([8, 6]))["y"].tolist() == [7, 5] and base.calls == 1
    assert syn.gather(torch.tensor([1, 3]))["y"].tolist() == [1, 1] and base.calls == 2
    feats = syn.features(np.array([6, 3]))
    assert feats.tolist() == [[-1.0] * 3, [9.0] * 3]
    assert syn.nbytes() is None
    more = syn.with_synthetic(torch.zeros(1, 3), torch.tensor([9]))
    assert len(more) == 10 and more.n_base == 6 and more.gather(torch.tensor([9, 6]))["y"].tolist() == [9, 5]
    with pytest.raises(ConfigError, match="with_synthetic"):
        base.with_synthetic(torch.zeros(2, 4), torch.tensor([0, 1]))


def test_with_synthetic_through_a_dataloader():
    ds = _toy(6)
    syn = WithSynthetic(ds, torch.full((2, 1, 2, 2), -5.0), torch.tensor([2, 0]))
    assert syn.nbytes() == ds.nbytes() + 2 * 4 * 4 + 2 * 8
    items = [7, 1, 6, 5]
    (batch,) = list(DataLoader(Batches(syn), batch_size=4, sampler=items, collate_fn=batch_collate))
    assert batch["index"].tolist() == items and batch["y"].tolist() == [0, 1, 2, 2]
    assert torch.equal(batch["x"][1], ds.x[1]) and float(batch["x"][0].max()) == -5.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_device_gathers_on_the_device():
    ds = _toy(20).to("cuda")
    assert ds.device.type == "cuda"
    batch = Batches(ds).__getitems__([(3, 1.0, 1), (4, 0.0, 0)])
    assert all(v.device.type == "cuda" for v in batch.values())
    assert batch["x"].cpu().equal(_toy(20).x[[3, 4]]) and batch["mask"].tolist() == [True, False]
    syn = WithSynthetic(_toy(20), torch.zeros(2, 1, 2, 2), torch.tensor([1, 2])).to("cuda")
    got = syn.gather(torch.tensor([21, 0]))
    assert got["x"].device.type == "cuda" and got["y"].tolist() == [2, 0]


def test_large_batches_cross_from_workers_through_shared_memory():
    ds = ArrayDataset(torch.arange(600 * 784, dtype=torch.float32).reshape(600, 1, 28, 28), torch.arange(600) % 10)
    order = np.random.default_rng(4).permutation(600).tolist()
    batches = list(DataLoader(Batches(ds), batch_size=128, sampler=order, collate_fn=batch_collate, num_workers=2))
    assert batches[0]["x"].nbytes > 64 << 10 and len(batches) == 5
    for b in batches:
        assert torch.equal(b["x"], ds.x[b["index"]]) and torch.equal(b["y"], ds.y[b["index"]])
    assert torch.cat([b["index"] for b in batches]).tolist() == order
