"""SMOTE then RS2 from one YAML, end to end on imbalanced digits: synthetic samples reach training
with provenance in the manifest, and the run reports balanced accuracy and per-class recall."""

import json

import numpy as np
import pytest

from selectkit.train import run

IMBALANCE = "+data.imbalance={classes:[1,3],keep_fraction:0.15}"


@pytest.mark.parametrize("space", ["input", "embedding"])
def test_smote_then_rs2_end_to_end(compose_cfg, tmp_path, space):
    cfg = compose_cfg("pipeline=smote_rs2", IMBALANCE, f"pipeline.stages.smote.space={space}", "trainer.max_epochs=2")
    out = tmp_path / space
    summary = run(cfg, out)
    assert summary["selector"] == "smote>rs2"
    n = summary["train_size"]
    syn = np.load(out / "selections" / "synthetic.npz")
    m = syn["labels"].size
    assert summary["synthetic"] == m > 0
    counts = np.bincount(syn["labels"], minlength=10)
    grown = np.asarray(summary["train_counts"]) + counts
    assert (grown == grown.max()).all(), "'auto' grows every class to the majority's size"
    assert counts[1] > 5 * np.delete(counts, [1, 3]).max(initial=0) and counts[3] > 0, "the cut classes grow most"
    assert syn["ids"].tolist() == list(range(n, n + m))
    assert syn["parents"].shape == (m, 2) and syn["parents"].max() < n
    assert ((syn["lam"] >= 0) & (syn["lam"] <= 1)).all()
    balanced = n + m
    for e in range(2):
        idx = np.load(out / "selections" / f"epoch_{e:04d}.npz")["indices"]
        assert idx.size == int(np.ceil(0.3 * balanced)) and idx.max() < balanced
        assert (idx >= n).any(), "synthetic samples are drawn for training"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[-1]["val_class_recall"]) == 10 and 0 <= rows[-1]["val_balanced_acc"] <= 1


def test_input_space_synthetic_rows_lie_on_segments(compose_cfg, tmp_path):
    from selectkit.data import build_datasets

    cfg = compose_cfg("pipeline=smote_rs2", IMBALANCE, "trainer.max_epochs=1")
    run(cfg, tmp_path / "r")
    syn = np.load(tmp_path / "r" / "selections" / "synthetic.npz")
    train, _, _ = build_datasets(name="digits", val_fraction=0.25, seed=0, normalize=True, imbalance={"classes": [1, 3], "keep_fraction": 0.15})
    x = train.x.reshape(len(train), -1).numpy()
    p0, p1, lam = syn["parents"][:, 0], syn["parents"][:, 1], syn["lam"]
    assert (train.y.numpy()[p0] == syn["labels"]).all() and (train.y.numpy()[p1] == syn["labels"]).all()
    expected = x[p0] + lam[:, None] * (x[p1] - x[p0])
    assert np.allclose(syn["features"], expected, atol=1e-5), "each synthetic row lies on its parents' segment"
