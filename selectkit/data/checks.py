"""The shared checks every data source passes, built-in or a third party's: `check_source` and
`check_batch_dataset` (re-exported by `selectkit.testing`).

Usage in a source's tests::

    from selectkit.testing import check_source

    def test_contract():
        check_source(MySource(root="..."))

They assert the `BatchDataset` contract on real calls: a batch in any order with repeats holds the
rows asked for, ``x`` float32 of ``input_shape`` and ``y`` int64 agreeing with ``labels()``; a gather of
no ids (what a batch without base rows or without synthetic rows asks for) answers the same keys with
0 rows and the same trailing shapes, dtypes and device; ``features`` matches the gathered rows, also
for no ids; `Batches` adds ``index``, ``weight`` and ``mask`` to both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from selectkit.data.base import BatchDataset, DataSource
from selectkit.data.batches import Batches


def check_batch_dataset(dataset: BatchDataset, name: str = "dataset") -> None:
    """Assert the `BatchDataset` contract on ``dataset`` (at least one row); ``name`` prefixes failures."""
    n = len(dataset)
    assert n > 0, f"{name}: check_batch_dataset needs a dataset with rows"
    ids = torch.tensor([n - 1, 0, n // 2, 0], dtype=torch.int64)
    full = dataset.gather(ids)
    shape = tuple(dataset.input_shape)
    x = full["x"]
    assert x.dtype == torch.float32 and tuple(x.shape) == (4, *shape), f"{name}: gather gives x {x.dtype} {tuple(x.shape)}, expected float32 {(4, *shape)}"
    assert torch.equal(x[1], x[3]), f"{name}: a repeated id gives different rows"
    labels = dataset.labels()
    if labels is None:
        assert "y" not in full, f"{name}: labels() is None but gather gives y"
    else:
        assert isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (n,), f"{name}: labels() must be int64 [{n}]"
        assert full["y"].dtype == torch.int64 and full["y"].tolist() == labels[ids.numpy()].tolist(), f"{name}: gather's y differs from labels()"
    empty = dataset.gather(torch.empty(0, dtype=torch.int64))
    _assert_empty_like(empty, full, f"{name}: gather of no ids")
    assert empty["x"].device == x.device, f"{name}: gather of no ids answers on {empty['x'].device}, other gathers on {x.device}"
    flat = int(np.prod(shape, dtype=np.int64))
    feats = dataset.features(ids.numpy())
    assert feats.dtype == np.float32 and feats.shape == (4, flat), f"{name}: features gives {feats.dtype} {feats.shape}, expected float32 (4, {flat})"
    np.testing.assert_allclose(feats, x.reshape(4, flat).cpu().numpy(), err_msg=f"{name}: features differ from the gathered rows")
    none = dataset.features(np.empty(0, dtype=np.int64))
    assert none.dtype == np.float32 and none.shape == (0, flat), f"{name}: features of no ids gives {none.dtype} {none.shape}, expected float32 (0, {flat})"
    batches = Batches(dataset)
    _assert_empty_like(batches.__getitems__([]), batches.__getitems__([0, n - 1]), f"{name}: Batches of no items")


def check_source(source: DataSource) -> None:
    """Assert the `DataSource` contract: ``setup`` loads once, ``meta`` describes ``train``, and ``train``
    and ``val`` (when there is one) pass `check_batch_dataset`."""
    source.setup()
    train = source.train
    source.setup()
    assert source.train is train, "setup() a second time must keep what the first loaded"
    meta = source.meta
    for key in ("name", "num_classes", "classes", "input_shape", "train_counts"):
        assert key in meta, f"meta lacks {key!r}"
    assert tuple(meta["input_shape"]) == tuple(train.input_shape), "meta['input_shape'] differs from train.input_shape"
    labels = train.labels()
    if labels is not None:
        assert meta["num_classes"] is not None and (labels.size == 0 or labels.max() < meta["num_classes"]), "a training label is not below meta['num_classes']"
        assert list(meta["train_counts"]) == np.bincount(labels, minlength=meta["num_classes"]).tolist(), "meta['train_counts'] differs from the training labels"
    check_batch_dataset(train, "train")
    if source.val is not None:
        check_batch_dataset(source.val, "val")


def _assert_empty_like(empty: dict[str, Any], full: dict[str, Any], what: str) -> None:
    assert set(empty) == set(full), f"{what} gives keys {sorted(empty)}, other batches {sorted(full)}"
    for key, value in full.items():
        got = empty[key]
        want = (0, *value.shape[1:])
        assert isinstance(got, torch.Tensor) and got.dtype == value.dtype and tuple(got.shape) == want, (
            f"{what}: {key} is {getattr(got, 'dtype', type(got).__name__)} {tuple(getattr(got, 'shape', ()))}, expected {value.dtype} {want}"
        )
