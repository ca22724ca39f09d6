"""The open core: a user's own data and model by `_target_`, memory-mapped arrays, variable-size and
weighted selections, model-output providers, and their errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from selectkit import registry
from selectkit.errors import ConfigError
from selectkit.models import MLP, ModelAdapter
from selectkit.selection import Selection
from selectkit.selector import Interval, Selector
from selectkit.testing import make_pool
from selectkit.train import run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bring-your-own"
TRAIN = [sys.executable, "-m", "selectkit.train"]


def _readme_command() -> list[str]:
    text = (EXAMPLE / "README.md").read_text()
    line = next(l for l in text.splitlines() if l.startswith("selectkit-train "))
    return shlex.split(line)[1:]


def test_bring_your_own_readme_command_trains_the_users_classes(tmp_path):
    out = tmp_path / "byo"
    args = _readme_command() + ["trainer.max_epochs=15", "trainer.accelerator=cpu", f"hydra.run.dir={out}"]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from selectkit.train import main; sys.argv[0] = 'selectkit-train'; main()", *args],
        cwd=EXAMPLE, capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["selector"] == "rs2"
    config = (out / ".hydra" / "config.yaml").read_text()
    assert "winekit.data.WineRows" in config and "winekit.model.TabularNet" in config
    assert summary["final"]["val_acc"] > 0.8, "the user's network learns the user's data"
    assert proc.stdout.strip().splitlines()[-1].startswith("selectkit-train: done:") and str(out) in proc.stdout


def test_named_layer_gives_embeddings_without_an_embed_method():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from winekit.model import TabularNet
    finally:
        sys.path.remove(str(EXAMPLE))
    net = TabularNet(in_features=13, num_classes=3, hidden=16).eval()
    x = torch.randn(5, 13)
    by_layer = ModelAdapter(net, embedding_layer="body", num_classes=3).embed(x)
    by_head = ModelAdapter(net, num_classes=3).embed(x)
    torch.testing.assert_close(by_layer, net.body(x))
    torch.testing.assert_close(by_head, net.body(x)), "the head's input is the default embedding"
    with pytest.raises(ConfigError, match=r"model\.embedding_layer"):
        ModelAdapter(net, embedding_layer="nope", num_classes=3)


def test_memory_mapped_arrays_train_end_to_end(compose_cfg, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", x[:1400])
    np.save(folder / "y.npy", y[:1400])
    np.savez(folder / "val.npz", x=x[1400:], y=y[1400:])
    cfg = compose_cfg(
        "selector=rs2", "selector.fraction=0.5", "trainer.max_epochs=4", "data=arrays", "data.batch_size=64",
        f"data.train={{x: {folder / 'x.npy'}, y: {folder / 'y.npy'}}}", f"data.val={folder / 'val.npz'}",
    )
    summary = run(cfg, tmp_path / "run")
    assert summary["train_size"] == 1400 and summary["final"]["val_acc"] > 0.5


class Growing(Selector):
    """A test selector whose selections grow each epoch (sizes may vary between epochs)."""

    name = "growing_test"
    parameter_constraints = {"start": Interval(1, None, integer=True)}

    def __init__(self, *, start: int = 100) -> None:
        self.start = start

    def _select(self, pool, ctx):
        m = min(len(pool), self.start * (ctx.epoch + 1))
        return Selection(ctx.rng().choice(len(pool), size=m, replace=False).astype(np.int64))


def test_variable_size_selections_train_and_are_counted(compose_cfg, tmp_path):
    registry.register()(Growing)
    try:
        cfg = compose_cfg("selector=rs2", "trainer.max_epochs=3")
        with open_dict(cfg):
            cfg.selector = {"name": "growing_test", "start": 150}
        run(cfg, tmp_path / "v")
    finally:
        registry.unregister("growing_test")
    rows = [json.loads(l) for l in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    seen = [r["examples_seen"] for r in rows]
    assert seen == [150, 450, 900], "every epoch trains on exactly its own selection's size"
    manifest = [json.loads(l) for l in (tmp_path / "v" / "selections" / "manifest.jsonl").read_text().splitlines()]
    assert [m["size"] for m in manifest] == [150, 300, 450]


def test_importance_weights_make_the_loss_an_unbiased_estimate():
    """Draws with probability p_i and weights 1/(n p_i): the mean weighted loss estimates the full mean.

    Over 400 seeded draws of 64 from 2,000 per-sample losses, the mean of the estimates lies within
    3 standard errors of the full-data mean loss, while the unweighted mean of the same draws (which
    over-samples high losses) is biased far outside that band.
    """
    from selectkit.hooks import LossTerm
    from selectkit.tasks import combine

    rng = np.random.default_rng(0)
    losses = rng.exponential(size=2000)
    p = (losses + 0.2) / (losses + 0.2).sum()
    full = losses.mean()
    weighted, plain = [], []
    for seed in range(400):
        draw = np.random.default_rng([seed, 7]).choice(2000, size=64, p=p)
        w = 1.0 / (2000 * p[draw])
        term = LossTerm(torch.tensor(losses[draw]), torch.tensor(w), torch.ones(64, dtype=torch.bool))
        weighted.append(float(combine([term], "mean")[0]))
        plain.append(losses[draw].mean())
    se = np.std(weighted) / np.sqrt(len(weighted))
    assert abs(np.mean(weighted) - full) < 3 * se
    assert abs(np.mean(plain) - full) > 10 * se


def test_mc_dropout_probabilities_are_deterministic_per_seed():
    a = make_pool(n=120, seed=3).get("mc_probs", passes=5)
    b = make_pool(n=120, seed=3).get("mc_probs", passes=5)
    c = make_pool(n=120, seed=4).get("mc_probs", passes=5)
    assert a.shape == (120, 5, 3)
    assert np.array_equal(a, b), "same seed, same MC-dropout samples"
    assert not np.allclose(a[:, 0], a[:, 1]), "dropout is on: the passes differ"
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(a.sum(axis=2), 1.0, rtol=1e-5)


def test_gradient_embeddings_match_autograd():
    pool = make_pool(n=40, d=6, classes=3)
    g = pool.get("grad_embeddings")
    assert g.shape == (40, 3 * 16)
    # against autograd: the gradient of the cross-entropy at the predicted label w.r.t. the head's weights
    net = MLP(in_features=4, hidden=[5], num_classes=3, dropout=0.0)
    x = torch.randn(7, 4)
    from selectkit.tasks.classification import _grad_embeddings

    emb = _grad_embeddings(ModelAdapter(net, num_classes=3), {"x": x})
    for i in range(7):
        net.zero_grad()
        logits = net(x[i : i + 1])
        torch.nn.functional.cross_entropy(logits, logits.argmax(1)).backward()
        torch.testing.assert_close(emb[i], net.classifier.weight.grad.flatten(), rtol=1e-4, atol=1e-6)


def test_gradient_embeddings_need_a_classifier_head():
    from selectkit.tasks.classification import _grad_embeddings

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    with pytest.raises(ConfigError, match=r"model\.head_layer"):
        _grad_embeddings(ModelAdapter(net, num_classes=3), {"x": torch.randn(2, 4)})


def test_provider_the_task_cannot_give_names_it(compose_cfg, tmp_path):
    class WantsNothingReal(Selector):
        name = "wants_bogus_test"
        requires = frozenset({"bogus_scores"})

        def __init__(self) -> None:
            pass

        def _select(self, pool, ctx):
            return Selection.all(len(pool))

    registry.register()(WantsNothingReal)
    try:
        cfg = compose_cfg("selector=rs2", "trainer.max_epochs=1")
        with open_dict(cfg):
            cfg.selector = {"name": "wants_bogus_test"}
        with pytest.raises(ConfigError, match=re.escape("'bogus_scores'")):
            run(cfg, tmp_path / "p")
    finally:
        registry.unregister("wants_bogus_test")
    assert not (tmp_path / "p" / "summary.json").exists()


@pytest.mark.ddp
def test_pool_scoring_sharded_over_two_ranks_equals_one_process(tmp_path):
    """Embeddings for an embedding-space SMOTE stage, scored as strided shards on two DDP ranks and
    gathered by index, give the selection a single process makes."""
    common = TRAIN + [
        "data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false",
        "pipeline=smote_rs2", "pipeline.stages.smote.space=embedding", "+data.imbalance={classes:[1,3],keep_fraction:0.2}",
        "trainer.max_epochs=1", "model.dropout=0.0",
    ]
    env = dict(os.environ, WANDB_MODE="disabled")
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(common + [f"hydra.run.dir={one}"], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.run(common + ["trainer.strategy=ddp", "trainer.devices=2", f"hydra.run.dir={two}"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = np.load(one / "selections" / "synthetic.npz"), np.load(two / "selections" / "synthetic.npz")
    assert a["labels"].size > 0
    assert np.array_equal(a["parents"], b["parents"]) and np.array_equal(a["lam"], b["lam"])
    np.testing.assert_allclose(a["features"], b["features"], rtol=1e-4, atol=1e-5)
