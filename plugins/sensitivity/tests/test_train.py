"""End-to-end: weighted training on digits through the Hydra app, the manifest's cost breakdown, a
refresh with the current model every n epochs, and the sensitivity-then-RS2 pipeline."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from selectkit.train import run

FAST = ["data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false", "checkpoint=false"]


def _cfg(tmp_path, *overrides):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=FAST + [f"paths.output_dir={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", *overrides])


def _manifest(out):
    return [json.loads(l) for l in (out / "selections" / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_weighted_coreset_trains_and_refreshes_with_the_current_model(tmp_path):
    out = tmp_path / "run"
    summary = run(
        _cfg(tmp_path, "selector=sensitivity", "selector.fraction=0.3", "selector.k=20", "selector.schedule=epoch", "selector.every=2", "trainer.max_epochs=5"),
        out,
    )
    assert summary["status"] == "completed" and summary["selector"] == "sensitivity"
    assert summary["final"]["val_acc"] > 0.7, "an MLP learns digits from a weighted 30% coreset"
    every = _manifest(out)
    lines = [l for l in every if l["ran"]]
    assert [l["epoch"] for l in every] == [0, 1, 2, 3, 4] and [l["epoch"] for l in lines] == [0, 2, 4], "refreshed every 2 epochs"
    m = int(np.ceil(0.3 * summary["train_size"]))
    for line in lines:
        meta = line["meta"]["sensitivity"]
        assert line["weighted"] and line["size"] == m
        assert {"embed_s", "cluster_s", "score_s", "sample_s"} <= set(meta)
        assert meta["embed_s"] + meta["cluster_s"] + meta["score_s"] + meta["sample_s"] <= line["select_s"] + 1e-3
        assert meta["model_evals"] == 2 * meta["clusters"] and meta["clusters"] <= 20
    z0, z2 = (np.load(out / "selections" / f"epoch_{e:04d}.npz") for e in (0, 2))
    assert z0["weights"].min() > 0 and not np.array_equal(z0["indices"], z2["indices"])
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["select_s"] >= sum(l["select_s"] for l in lines) - 1e-3, "selection cost counted in select_s"


@pytest.mark.slow
def test_sensitivity_then_rs2_pipeline(tmp_path):
    out = tmp_path / "pipe"
    summary = run(_cfg(tmp_path, "pipeline=sensitivity_rs2", "pipeline.stages.coreset.fraction=0.4", "pipeline.stages.coreset.k=20", "trainer.max_epochs=6"), out)
    assert summary["selector"] == "coreset>rs2"
    lines = _manifest(out)
    assert [l["ran"] for l in lines] == [["coreset", "rs2"]] + [["rs2"]] * 5, "coreset once, RS2 every epoch"
    m = int(np.ceil(0.4 * summary["train_size"]))
    assert all(l["size"] == int(np.ceil(0.5 * m)) and l["weighted"] for l in lines)
    seen = np.concatenate([np.load(out / "selections" / f"epoch_{e:04d}.npz")["indices"] for e in range(6)])
    assert np.unique(seen).size <= m < summary["train_size"], "RS2 draws from the coreset only"
    assert summary["final"]["val_acc"] > 0.6
