"""Leverage sampling end to end on digits through the Hydra app: weighted training, the cost breakdown
in the manifest, and SMOTE then leverage as one pipeline."""

import json
import os

import numpy as np

from selectkit.testing import compose_train_config
from selectkit.train import run

os.environ.setdefault("WANDB_MODE", "disabled")


def _manifest(out):
    return [json.loads(l) for l in (out / "selections" / "manifest.jsonl").read_text().splitlines()]


def test_weighted_leverage_training_on_digits(tmp_path):
    cfg = compose_train_config(tmp_path, "selector=leverage", "selector.budget=0.3", "selector.uniform_mix=0.1", "trainer.max_epochs=3")
    out = tmp_path / "run"
    summary = run(cfg, out)
    n = summary["train_size"]
    z = np.load(out / "selections" / "epoch_0000.npz")
    m = int(np.ceil(0.3 * n))
    assert z["indices"].size == m and np.unique(z["indices"]).size == m, "pivotal: fixed size, no repeats"
    w = z["weights"]
    assert w.shape == (m,) and (w > 0).all() and not np.allclose(w, w[0]), "importance weights reach training"
    assert abs(w.mean() - 1.0) < 0.15, "weights keep the learning-rate scale"
    line = _manifest(out)[0]
    meta = line["meta"]["leverage"]
    assert {"score_s", "sample_s", "coords_s"} <= set(meta) and line["select_s"] >= meta["score_s"]
    assert meta["rank"] < 64, "digits' always-blank pixels make the features rank-deficient: the numerical rank is used"
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "completed" and s["selector"] == "leverage"
    assert s["final"]["val_acc"] > 0.5, "an MLP learns digits from a weighted 30% subset"


def test_smote_then_leverage_pipeline(tmp_path):
    cfg = compose_train_config(tmp_path, "pipeline=smote_leverage", "+data.imbalance={classes:[1,3],keep_fraction:0.15}", "trainer.max_epochs=2")
    out = tmp_path / "chain"
    summary = run(cfg, out)
    assert summary["selector"] == "smote>leverage"
    n = summary["train_size"]
    syn = np.load(out / "selections" / "synthetic.npz")
    balanced = n + syn["labels"].size
    lines = _manifest(out)
    picks = []
    for e in range(2):
        z = np.load(out / "selections" / f"epoch_{e:04d}.npz")
        idx = z["indices"]
        assert idx.size == int(np.ceil(0.3 * balanced)) and idx.max() < balanced
        assert (idx >= n).any(), "synthetic samples are scored and drawn"
        assert (z["weights"] > 0).all()
        picks.append(idx)
    assert not np.array_equal(picks[0], picks[1]), "a fresh pivotal draw every epoch"
    assert lines[1]["meta"]["leverage"]["scores_cached"] is True, "the scores are computed once"
    assert "smote" in lines[0]["meta"] and "score_s" in lines[0]["meta"]["leverage"]
