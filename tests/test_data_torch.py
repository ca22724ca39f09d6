"""`TorchDataset`: any map-style torch Dataset through `Batches` and real DataLoaders (0 and 2 workers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from selectkit.data import Batches, TorchDataset, TorchItems, batch_collate
from selectkit.errors import ConfigError

N = 40
X = torch.arange(N * 6, dtype=torch.float32).reshape(N, 2, 3)
Y = torch.arange(N) % 5


class Pairs(Dataset):
    """(x, y) tuples of numpy arrays and Python ints; counts item reads."""

    def __init__(self, n: int = N) -> None:
        self.n = n
        self.reads = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.reads += 1
        return X[i].numpy(), int(Y[i])


class Dicts(Pairs):
    def __getitem__(self, i: int):
        self.reads += 1
        return {"x": X[i], "y": Y[i], "name": f"row{i}"}


class XOnly(Pairs):
    def __getitem__(self, i: int):
        self.reads += 1
        return X[i]


class WithLabelsMethod(Pairs):
    def labels(self):
        return Y.numpy()


class WithGetLabels(Pairs):
    def get_labels(self):
        return Y.tolist()


class WithTargets(Pairs):
    targets = Y


class WithLabelsAttribute(Pairs):
    labels = Y.numpy()


class WithClassIds(XOnly):
    def class_ids(self):
        return Y.numpy()

    classes_attr = Y.numpy()


class Triples(Pairs):
    def __getitem__(self, i: int):
        return X[i], Y[i], i


class Strings(Pairs):
    def __getitem__(self, i: int):
        return "row", 1


class Ragged(Pairs):
    def __getitem__(self, i: int):
        return torch.zeros(2 + i % 2), 0


class FloatLabels(Pairs):
    def __getitem__(self, i: int):
        return X[i], 0.5


def _loader(source_ds, items, workers):
    return list(DataLoader(Batches(source_ds), batch_size=8, sampler=items, collate_fn=batch_collate, num_workers=workers))


def _source(dataset, **kw) -> TorchDataset:
    source = TorchDataset(dataset, **kw)
    source.setup()
    return source


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("kind", [Pairs, Dicts, TensorDataset])
def test_items_become_batches_in_a_dataloader(kind, workers):
    dataset = TensorDataset(X, Y) if kind is TensorDataset else kind()
    source = _source(dataset, val_dataset=Pairs(10))
    items = [(int(i), 1.0 + int(i), int(i) % 3 != 0) for i in np.random.default_rng(1).permutation(N)]
    batches = _loader(source.train, items, workers)
    assert len(batches) == 5
    for b in batches:
        assert type(b) is dict and b["x"].dtype == torch.float32 and b["y"].dtype == torch.int64
        assert torch.equal(b["x"], X[b["index"]]) and torch.equal(b["y"], Y[b["index"]])
        assert torch.equal(b["weight"], 1.0 + b["index"].float()) and torch.equal(b["mask"], b["index"] % 3 != 0)
    assert torch.cat([b["index"] for b in batches]).tolist() == [i for i, _, _ in items]
    val = _loader(source.val, list(range(10)), workers)
    assert [b["index"].tolist() for b in val] == [list(range(8)), [8, 9]] and torch.equal(val[1]["y"], Y[[8, 9]])
    assert source.meta == {"name": type(dataset).__name__, "num_classes": 5, "classes": None, "input_shape": (2, 3), "train_counts": [8] * 5}


def test_adapter_matches_a_plain_dataloader():
    dataset = TensorDataset(X, Y)
    order = np.random.default_rng(2).permutation(N).tolist()
    plain = list(DataLoader(dataset, batch_size=8, sampler=order))
    ours = _loader(TorchItems(dataset), order, 0)
    for (x, y), b in zip(plain, ours, strict=True):
        assert torch.equal(x, b["x"]) and torch.equal(y, b["y"])


@pytest.mark.parametrize("kind", [WithLabelsMethod, WithGetLabels, WithTargets, WithLabelsAttribute])
def test_label_hooks_avoid_reading_items(kind):
    dataset = kind()
    source = _source(dataset)
    np.testing.assert_array_equal(source.train.labels(), Y.numpy())
    assert source.train.labels().dtype == np.int64 and dataset.reads == 1, "only the first item is read (to learn its shape)"
    assert source.meta["num_classes"] == 5


def test_labels_fall_back_to_reading_every_item_once():
    dataset = Pairs()
    source = _source(dataset)
    assert dataset.reads == 1 + N
    np.testing.assert_array_equal(source.train.labels(), Y.numpy())
    source.train.labels()
    source.setup()
    assert dataset.reads == 1 + N


def test_labels_setting_file_and_attribute(tmp_path):
    np.save(tmp_path / "y.npy", Y.numpy())
    np.savetxt(tmp_path / "y.txt", Y.numpy(), fmt="%d")
    for spec in (str(tmp_path / "y.npy"), str(tmp_path / "y.txt"), "class_ids", "classes_attr"):
        dataset = WithClassIds()
        source = _source(dataset, labels=spec)
        np.testing.assert_array_equal(source.train.labels(), Y.numpy())
        (batch,) = _loader(source.train, [3, 9], 0)
        assert batch["y"].tolist() == [3, 4], "unlabelled items take their y from the labels setting"
        assert dataset.reads == 1 + 2


def test_unlabelled_items():
    source = _source(XOnly())
    assert source.train.labels() is None
    assert source.meta["num_classes"] is None and source.meta["train_counts"] is None
    (batch,) = _loader(source.train, [1, 2], 2)
    assert set(batch) == {"x", "index", "weight", "mask"} and torch.equal(batch["x"], X[[1, 2]])


def test_classes_and_num_classes():
    source = _source(WithLabelsMethod(), classes=list("abcdefg"))
    assert source.meta["num_classes"] == 7 and source.meta["classes"] == list("abcdefg") and source.meta["train_counts"] == [8] * 5 + [0, 0]
    assert _source(WithLabelsMethod(), num_classes=6).meta["num_classes"] == 6


def test_hydra_builds_nested_datasets():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        """
        _target_: selectkit.data.TorchDataset
        dataset:
          _target_: torch.utils.data.TensorDataset
          _args_:
            - {_target_: torch.ones, _args_: [12, 3]}
            - {_target_: torch.remainder, input: {_target_: torch.arange, end: 12}, other: 4}
        num_classes: 4
        """
    )
    source = instantiate(cfg)
    source.setup()
    assert source.meta["num_classes"] == 4 and source.meta["train_counts"] == [3, 3, 3, 3] and source.meta["input_shape"] == (3,)
    (batch,) = _loader(source.train, [5, 6], 0)
    assert batch["y"].tolist() == [1, 2] and batch["x"].shape == (2, 3)


def _write_labels(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros(3, dtype=int))
    np.save(tmp_path / "float.npy", np.full(N, 0.5))
    np.save(tmp_path / "big.npy", np.full(N, 9))
    (tmp_path / "bad.txt").write_text("a b c\n")


@pytest.mark.parametrize(
    "dataset, settings, setting",
    [
        (Triples, {}, "data.dataset"),
        (Strings, {}, "data.dataset"),
        (lambda: Pairs(0), {}, "data.dataset"),
        (lambda: 17, {}, "data.dataset"),
        (XOnly, {"labels": "missing.npy"}, "data.labels"),
        (XOnly, {"labels": "short.npy"}, "data.labels"),
        (XOnly, {"labels": "float.npy"}, "data.labels"),
        (XOnly, {"labels": "bad.txt"}, "data.labels"),
        (XOnly, {"labels": "big.npy", "num_classes": 5}, "data.labels"),
        (XOnly, {"labels": "no_such_attribute"}, "data.labels"),
        (XOnly, {"labels": 3.5}, "data.labels"),
        (WithTargets, {"num_classes": 3}, "data.labels"),
        (WithTargets, {"num_classes": 0}, "data.num_classes"),
        (WithTargets, {"num_classes": 3, "classes": ["a", "b"]}, "data.classes"),
        (WithTargets, {"val_dataset": Ragged(4)}, "data.val_dataset"),
        (FloatLabels, {}, "data.dataset"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_setting(tmp_path, dataset, settings, setting):
    _write_labels(tmp_path)
    if isinstance(settings.get("labels"), str) and settings["labels"].endswith((".npy", ".txt")):
        settings = {**settings, "labels": str(tmp_path / settings["labels"])}
    with pytest.raises(ConfigError) as err:
        _source(dataset(), **settings)
    msg = str(err.value)
    assert msg.startswith((setting + ":", setting + " ")) and "\n" not in msg, msg


def test_bad_items_found_while_gathering():
    source = _source(Ragged(6), labels=np.zeros(6, dtype=int))
    with pytest.raises(ConfigError, match=r"^data\.dataset: items have different shapes"):
        source.train.gather(torch.tensor([0, 1]))
    assert source.train.gather(torch.tensor([0, 2]))["x"].shape == (2, 2)
