"""A user's map-style torch Dataset (scikit-learn's breast cancer, in a package of the user's, named by
``_target_`` in the user's config folder) trained end to end with embedding-space SMOTE that starts
late: the batches without synthetic rows and those without real rows gather no ids from the Dataset."""

from __future__ import annotations

import json
import textwrap

import numpy as np

from selectkit.testing import compose_train_config
from selectkit.train import run

USER_PACKAGE = '''
"""The user's data: scikit-learn's breast cancer as a map-style torch Dataset of (x, label) items."""

import numpy as np
import torch
from torch.utils.data import Dataset


class CancerRows(Dataset):
    """Standardised features and int labels; every fourth row is the test split, and the training
    split keeps a third of the malignant rows (class 0), so SMOTE has a minority to grow."""

    def __init__(self, split: str = "train") -> None:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        x = (bunch.data - bunch.data.mean(0)) / bunch.data.std(0)
        test = np.arange(len(x)) % 4 == 0
        keep = test if split == "test" else ~test & ((bunch.target == 1) | (np.arange(len(x)) % 3 == 0))
        self.x = torch.as_tensor(x[keep], dtype=torch.float32)
        self.y = bunch.target[keep]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])
'''

USER_DATA_CONFIG = """
_target_: selectkit.data.TorchDataset
dataset: {_target_: cancerkit.CancerRows, split: train}
val_dataset: {_target_: cancerkit.CancerRows, split: test}
batch_size: 2
num_workers: 0
shuffle: true
record_shards: true
on_device: auto
"""


def test_embedding_smote_on_a_users_dataset_trains_through_pure_batches(tmp_path, monkeypatch):
    (tmp_path / "cancerkit.py").write_text(textwrap.dedent(USER_PACKAGE))
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "cancer.yaml").write_text(USER_DATA_CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    cfg = compose_train_config(
        out,
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "data=cancer",
        "pipeline=smote_rs2",
        "pipeline.stages.smote.space=embedding",
        "pipeline.stages.smote.start_epoch=1",
        "pipeline.stages.rs2.fraction=0.1",
        "trainer.max_epochs=2",
    )
    summary = run(cfg, out)
    assert summary["status"] == "completed" and summary["dataset"] == "CancerRows" and summary["epochs"] == 2
    counts = summary["train_counts"]
    assert summary["synthetic"] == max(counts) - min(counts) > 0, "SMOTE balanced the two classes"
    lines = [json.loads(line) for line in (out / "selections" / "manifest.jsonl").read_text().splitlines()]
    assert [line["ran"] for line in lines] == [["rs2"], ["smote", "rs2"]]
    # the loader's own order of epoch 1: batches of real rows only and of synthetic rows only both ran
    order = np.load(out / "shards" / "epoch_0001_rank_0.npz")["indices"]
    per_batch = [int((order[i : i + 2] >= sum(counts)).sum()) for i in range(0, order.shape[0], 2)]
    assert 0 in per_batch and 2 in per_batch, per_batch
