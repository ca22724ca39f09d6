"""Embedding-space SMOTE that starts late (``start_epoch``) and refreshes (``every``): it interpolates a
trained model's embeddings, the loader is rebuilt only at the epochs its samples change, and a resume
reproduces the uninterrupted run."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.lightning import RunRecorder, SelectionDataModule
from selectkit.testing import compose_train_config
from selectkit.train import build_module, build_pipeline, build_source, build_trainer, loader_settings, run

IMBALANCED = ["data=digits", "model=mlp", "+data.imbalance={classes:[1,3],keep_fraction:0.2}", "data.batch_size=64"]
LATE = ["pipeline=smote_rs2", "pipeline.stages.smote.space=embedding", "pipeline.stages.rs2.fraction=1.0"]


@pytest.fixture
def compose_cfg(tmp_path):
    return lambda *overrides: compose_train_config(tmp_path, *overrides)


class Capture(pl.Callback):
    """At each epoch start: the training loader in use and every training row's embedding, computed by
    the same provider the SMOTE stage reads (so it sees the weights that stage saw at that epoch)."""

    def __init__(self, dm: SelectionDataModule) -> None:
        self.dm = dm
        self.loaders: list[int] = []
        self.embeddings: list[np.ndarray] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.loaders.append(id(trainer.fit_loop._combined_loader.flattened[0]))
        ids = np.arange(len(self.dm.train_ds), dtype=np.int64)
        self.embeddings.append(np.asarray(self.dm.controller.model_outputs["embeddings"](ids)))


def _fit(cfg, out_dir):
    pipeline = build_pipeline(cfg)
    source = build_source(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, source.meta)
    dm = SelectionDataModule(source, pipeline, out_dir=out_dir, **loader_settings(cfg))
    capture = Capture(dm)
    trainer = build_trainer(cfg, out_dir, [RunRecorder(out_dir, [], dm, monitor=module.task.monitor), capture], None)
    trainer.fit(module, datamodule=dm)
    return dm, capture


def test_late_embedding_smote_uses_the_trained_model_and_rebuilds_the_loader_once(compose_cfg, tmp_path):
    cfg = compose_cfg(*IMBALANCED, *LATE, "pipeline.stages.smote.start_epoch=2", "trainer.max_epochs=4")
    dm, capture = _fit(cfg, tmp_path)
    assert capture.loaders[0] == capture.loaders[1] != capture.loaders[2] == capture.loaders[3], "rebuilt once, at epoch 2"
    e0, e2 = capture.embeddings[0], capture.embeddings[2]
    assert np.abs(e2 - e0).mean() > 1e-2, "two epochs of training moved the embeddings"
    syn = np.load(tmp_path / "selections" / "synthetic.npz")
    p, lam = syn["parents"], syn["lam"][:, None]
    assert p.shape[0] > 0 and np.isin(syn["labels"], [1, 3]).mean() > 0.8, "mostly the two cut classes"
    made = syn["features"]
    np.testing.assert_allclose(made, e2[p[:, 0]] + lam * (e2[p[:, 1]] - e2[p[:, 0]]), atol=1e-4)
    assert not np.allclose(made, e0[p[:, 0]] + lam * (e0[p[:, 1]] - e0[p[:, 0]]), atol=1e-3), "not the untrained model's"
    n = len(dm.train_ds)
    sizes = [np.load(tmp_path / "selections" / f"epoch_{e:04d}.npz")["indices"] for e in range(4)]
    assert all((s < n).all() for s in sizes[:2]) and all((s >= n).sum() == p.shape[0] for s in sizes[2:])
    lines = [json.loads(l) for l in (tmp_path / "selections" / "manifest.jsonl").read_text().splitlines()]
    assert [l["ran"] for l in lines] == [["rs2"], ["rs2"], ["smote", "rs2"], ["rs2"]], [(l["epoch"], l["ran"]) for l in lines]


def test_refreshing_smote_resumes_identically(compose_cfg, tmp_path):
    # a constant learning rate: a schedule sized on 2 epochs would differ from one sized on 4 after the resume
    common = [*IMBALANCED, *LATE, "pipeline.stages.smote.start_epoch=1", "pipeline.stages.smote.schedule=epoch", "pipeline.stages.smote.every=2", "optim.scheduler=null"]
    run(compose_cfg(*common, "trainer.max_epochs=4"), tmp_path / "whole")
    run(compose_cfg(*common, "trainer.max_epochs=2"), tmp_path / "part")
    run(compose_cfg(*common, "trainer.max_epochs=4", f"resume={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}"), tmp_path / "part")
    whole, part = tmp_path / "whole" / "selections", tmp_path / "part" / "selections"
    for e in range(4):
        np.testing.assert_array_equal(np.load(whole / f"epoch_{e:04d}.npz")["indices"], np.load(part / f"epoch_{e:04d}.npz")["indices"])
    a, b = np.load(whole / "synthetic.npz"), np.load(part / "synthetic.npz")
    np.testing.assert_array_equal(a["parents"], b["parents"])
    np.testing.assert_allclose(a["features"], b["features"], atol=1e-5)
    ran = [json.loads(l)["ran"] for l in (whole / "manifest.jsonl").read_text().splitlines()]
    assert ran == [["rs2"], ["smote", "rs2"], ["rs2"], ["smote", "rs2"]], "made at epoch 1, re-made at epoch 3"


def test_start_epoch_beyond_training_names_the_setting(compose_cfg, tmp_path):
    cfg = compose_cfg(*IMBALANCED, *LATE, "pipeline.stages.smote.start_epoch=3", "trainer.max_epochs=3")
    with pytest.raises(ConfigError, match=r"pipeline.stages.smote.start_epoch=3 is not below trainer.max_epochs=3"):
        run(cfg, tmp_path)
    assert not (tmp_path / "summary.json").exists()
