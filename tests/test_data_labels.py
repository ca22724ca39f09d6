"""Labels: the one validator every source reads them through (`selectkit.data.base.check_labels`).

String labels are refused with how to map them, or mapped through ``data.classes``; NaN, non-integer,
negative and out-of-range labels name the first offending row (or item) and its value; every error
is one line naming the setting. Each source is checked through its own route: `TorchDataset` labels
from an attribute, a method, a file and the items themselves; `Arrays` from ``.npy`` and ``.npz``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from selectkit.data import Arrays, TorchDataset
from selectkit.data.base import check_labels, check_classes
from selectkit.errors import ConfigError

NAMES = np.array(["benign", "malignant", "malignant", "benign", "malignant"])


def _one_line(err: pytest.ExceptionInfo, setting: str) -> str:
    msg = str(err.value)
    assert msg.startswith((setting + ":", setting + " ")) and "\n" not in msg, msg
    return msg


# ----------------------------------------------------------------------------------------- the validator
def test_string_labels_say_what_they_are_and_how_to_map_them():
    with pytest.raises(ConfigError) as err:
        check_labels(NAMES, "data.labels")
    msg = _one_line(err, "data.labels")
    assert "strings ('benign', 'malignant')" in msg and "0..C-1" in msg and "data.classes" in msg and "<U" not in msg
    with pytest.raises(ConfigError) as err:
        check_labels(np.array([f"class{i}" for i in range(5)]), "data.train", classes_setting=None)
    msg = _one_line(err, "data.train")
    assert "'class0', 'class1', ..." in msg and "data.classes" not in msg


def test_string_labels_map_through_the_class_names():
    y = check_labels(NAMES, "data.labels", 2, classes=["benign", "malignant"])
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 1, 0, 1]
    assert check_labels(["b", "a", "b"], "data.labels", classes=["a", "b"]).tolist() == [1, 0, 1]
    with pytest.raises(ConfigError) as err:
        check_labels(["benign", "malignant", "cyst"], "data.labels", classes=["benign", "malignant"])
    msg = _one_line(err, "data.labels")
    assert "row 2 has label 'cyst'" in msg and "data.classes" in msg and "'benign', 'malignant'" in msg


@pytest.mark.parametrize(
    "labels, row, shown",
    [
        (np.array([0.0, 1.0, np.nan, 1.0, np.nan]), 2, "nan"),
        (np.array([0, 1, 1, 2.5]), 3, "2.5"),
        (np.array([0.0, np.inf]), 1, "inf"),
        (np.array([0, 3, -1, 2, -4]), 2, "-1"),
        (torch.tensor([1, 0, -2]), 2, "-2"),
        ([0, 1, None, 1], 2, "None"),
        (np.array([1, "x", 2], dtype=object), 1, "'x'"),
        (np.array(["a", "b", 3], dtype=object), 2, "3"),
    ],
)
def test_bad_values_name_the_first_offending_row(labels, row, shown):
    with pytest.raises(ConfigError) as err:
        check_labels(labels, "data.train")
    msg = _one_line(err, "data.train")
    assert f"row {row} has label {shown}" in msg, msg


def test_rows_are_named_by_the_ids_given_and_out_of_range_names_the_row():
    with pytest.raises(ConfigError) as err:
        check_labels([0, 1, float("nan")], "data.dataset", ids=[17, 4, 31], unit="item")
    assert "item 31 has label nan" in _one_line(err, "data.dataset")
    with pytest.raises(ConfigError) as err:
        check_labels(np.array([0, 2, 5, 7]), "data.val", 5)
    assert "row 2 has label 5, out of range for 5 classes (0..4)" in _one_line(err, "data.val")
    with pytest.raises(ConfigError) as err:
        check_labels([torch.tensor(1), torch.tensor([0, 1])], "data.dataset", ids=[8, 9], unit="item")
    assert "item 9 has a label of shape (2,)" in _one_line(err, "data.dataset")


def test_valid_labels_of_every_form_become_int64():
    for y in (np.array([2, 0, 1], dtype=np.uint8), np.array([2.0, 0.0, 1.0]), torch.tensor([2, 0, 1]), [2, 0, 1], [np.int64(2), torch.tensor(0), np.array([1])]):
        out = check_labels(y, "data.labels", 3)
        assert out.dtype == np.int64 and out.tolist() == [2, 0, 1]
    assert check_labels(np.array([], dtype=np.int64), "data.labels").shape == (0,)
    with pytest.raises(ConfigError, match=r"^data\.labels: labels are True/False"):
        check_labels(np.array([True, False]), "data.labels")
    with pytest.raises(ConfigError, match=r"^data\.labels: labels must be one class id per row \(1-D\)"):
        check_labels(np.zeros((3, 2)), "data.labels")


def test_class_names_must_be_a_list_of_distinct_names():
    assert check_classes(None) is None and check_classes(("a", 2)) == ["a", "2"]
    for bad, part in (("ab", "a list of class names"), (["a", "b", "a"], "twice: a"), ([], "no names")):
        with pytest.raises(ConfigError) as err:
            check_classes(bad)
        assert part in _one_line(err, "data.classes")


# ----------------------------------------------------------------------------------------- TorchDataset
class Items(Dataset):
    """Items ``(x, label)`` with the labels given, found only by fetching every item once."""

    def __init__(self, labels) -> None:
        self.y = list(labels)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return torch.full((3,), float(i)), self.y[i]


class Rows(Items):
    """The same items, their labels also in a ``targets`` attribute (read without fetching)."""

    @property
    def targets(self) -> list:
        return self.y


class XOnly(Items):
    """Unlabelled items; ``class_names()`` returns the labels."""

    def __getitem__(self, i: int):
        return torch.full((3,), float(i))

    def class_names(self) -> list:
        return list(self.y)


def _source(dataset, **kw) -> TorchDataset:
    source = TorchDataset(dataset, **kw)
    source.setup()
    return source


def test_torch_dataset_string_labels_from_items_attribute_method_and_file(tmp_path):
    (tmp_path / "y.txt").write_text("\n".join(NAMES) + "\n")
    routes = [
        (lambda: Items(NAMES), {}, "data.dataset"),
        (lambda: Rows(NAMES), {}, "data.labels"),
        (lambda: XOnly(NAMES), {"labels": "class_names"}, "data.labels"),
        (lambda: XOnly(NAMES), {"labels": str(tmp_path / "y.txt")}, "data.labels"),
    ]
    for make, settings, setting in routes:
        with pytest.raises(ConfigError) as err:
            _source(make(), **settings)
        msg = _one_line(err, setting)
        assert "strings ('benign', 'malignant')" in msg and "data.classes" in msg
        source = _source(make(), classes=["benign", "malignant"], **settings)
        assert source.train.labels().tolist() == [0, 1, 1, 0, 1] and source.meta["num_classes"] == 2
        assert source.meta["train_counts"] == [2, 3] and source.meta["classes"] == ["benign", "malignant"]
        assert source.train.gather(torch.tensor([4, 0, 2]))["y"].tolist() == [1, 0, 1]


def test_torch_dataset_class_names_reach_the_validation_items():
    source = _source(Rows(NAMES), val_dataset=Items(["malignant", "benign"]), classes=["benign", "malignant"])
    assert source.val.labels().tolist() == [1, 0] and source.val.gather(torch.tensor([1, 0]))["y"].tolist() == [0, 1]
    source = _source(Rows(NAMES), val_dataset=Items(["benign", "cyst"]), classes=["benign", "malignant"])
    with pytest.raises(ConfigError) as err:
        source.val.gather(torch.tensor([0, 1]))
    assert "item 1 has label 'cyst'" in _one_line(err, "data.val_dataset")


def test_torch_dataset_nan_and_negative_labels_name_the_item(tmp_path):
    with pytest.raises(ConfigError) as err:
        _source(Items([0, 1, float("nan"), 1]))
    assert "item 2 has label nan" in _one_line(err, "data.dataset")
    with pytest.raises(ConfigError) as err:
        _source(Rows([0, 1, 1, -3]))
    assert "item 3 has label -3" in _one_line(err, "data.labels")
    np.save(tmp_path / "y.npy", np.array([0.0, 1.5, 1.0, 0.0]))
    with pytest.raises(ConfigError) as err:
        _source(XOnly([0, 0, 0, 0]), labels=str(tmp_path / "y.npy"))
    assert "item 1 has label 1.5" in _one_line(err, "data.labels")


def test_torch_dataset_item_labels_checked_while_gathering():
    """Items whose labels a hook does not describe are checked batch by batch, naming the item."""
    source = _source(XOnly([0, 1, 0, 1]), labels=[0, 1, 0, 1])
    assert source.train.gather(torch.tensor([3, 1]))["y"].tolist() == [1, 1]
    rows = Rows([0, 1, 0, 1])
    source = _source(rows, num_classes=2)
    rows.y[2] = -1
    with pytest.raises(ConfigError) as err:
        source.train.gather(torch.tensor([3, 2]))
    assert "item 2 has label -1" in _one_line(err, "data.dataset")
    rows.y[2] = 2
    with pytest.raises(ConfigError) as err:
        source.train.gather(torch.tensor([2]))
    assert "item 2 has label 2, out of range for 2 classes" in _one_line(err, "data.dataset")


# ----------------------------------------------------------------------------------------- Arrays
@pytest.mark.parametrize("form", ["npy", "npz"])
def test_arrays_string_labels_and_class_names(tmp_path, form):
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    if form == "npy":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", NAMES)
        train = {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}
    else:
        np.savez(tmp_path / "pool.npz", x=x, y=NAMES)
        train = str(tmp_path / "pool.npz")
    with pytest.raises(ConfigError) as err:
        Arrays(train=train).setup()
    msg = _one_line(err, "data.train")
    assert "strings ('benign', 'malignant')" in msg and "data.classes" in msg and "<U" not in msg
    np.savez(tmp_path / "val.npz", x=x[:2], y=np.array(["malignant", "benign"]))
    source = Arrays(train=train, val=str(tmp_path / "val.npz"), classes=["benign", "malignant"])
    source.setup()
    assert source.train.labels().tolist() == [0, 1, 1, 0, 1] and source.val.labels().tolist() == [1, 0]
    assert source.meta["classes"] == ["benign", "malignant"] and source.meta["train_counts"] == [2, 3]


def test_arrays_nan_labels_name_the_row(tmp_path):
    np.savez(tmp_path / "pool.npz", x=np.zeros((6, 2), dtype=np.float32), y=np.array([0, 1, 0, 1, np.nan, 0]))
    with pytest.raises(ConfigError) as err:
        Arrays(train=str(tmp_path / "pool.npz")).setup()
    assert "row 4 has label nan" in _one_line(err, "data.train")
    np.savez(tmp_path / "val.npz", x=np.zeros((3, 2), dtype=np.float32), y=np.array([1, 0, 3]))
    np.savez(tmp_path / "pool.npz", x=np.zeros((4, 2), dtype=np.float32), y=np.array([0, 1, 0, 1]))
    with pytest.raises(ConfigError) as err:
        Arrays(train=str(tmp_path / "pool.npz"), val=str(tmp_path / "val.npz")).setup()
    assert "row 2 has label 3, out of range for 2 classes" in _one_line(err, "data.val")
