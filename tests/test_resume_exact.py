"""A run resumed at an epoch boundary trains exactly as the uninterrupted one: the model, not only the
selections (dropout reseeded per epoch, loaders with generators of their own)."""

import json

import torch

from selectkit.train import run


def _val_losses(run_dir):
    return [json.loads(l)["val_loss"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_model_with_dropout(compose_cfg, tmp_path):
    # the MLP has dropout 0.1; a constant learning rate, since a schedule is sized on max_epochs
    common = ["selector=rs2", "selector.fraction=0.5", "model.dropout=0.3", "optim.scheduler=null"]
    run(compose_cfg(*common, "trainer.max_epochs=4"), tmp_path / "whole")
    run(compose_cfg(*common, "trainer.max_epochs=2"), tmp_path / "part")
    run(compose_cfg(*common, "trainer.max_epochs=4", f"resume={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}"), tmp_path / "part")
    assert _val_losses(tmp_path / "whole") == _val_losses(tmp_path / "part")
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

