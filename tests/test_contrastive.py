"""The contrastive task: losses and retrieval metrics against brute-force references, whole tuples in
batches and across ranks, training on digits end to end (single process and DDP), bad input."""

import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.lightning import SelectionDataModule
from selectkit.neighbors import MemoryCapExceeded
from selectkit.sampler import TupleBatchSampler
from selectkit.tasks import Contrastive, combine
from selectkit.tasks.contrastive import retrieval_metrics
from selectkit.train import build_module, build_pipeline, build_source, loader_settings, run

TRAIN = [sys.executable, "-m", "selectkit.train"]
CLI_FAST = ["data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false"]
TUPLES = ["task=contrastive", "selector=random_tuples"]


def _setup(compose_cfg, *overrides):
    """A real module and data module of digits with random tuples, the training loader bound to the task."""
    cfg = compose_cfg(*TUPLES, *overrides)
    source = build_source(cfg)
    module = build_module(cfg, source.meta)
    dm = SelectionDataModule(source, build_pipeline(cfg), **loader_settings(cfg))
    dm.setup()
    loader = dm.train_dataloader()
    module.task.bind_tuples(loader.batch_sampler)
    module.eval()  # dropout off: the references embed the same batch again
    return cfg, source, module, dm, loader


def _first_batch(loader, epoch=0):
    loader.batch_sampler.set_epoch(epoch)
    return next(iter(loader))


# ----------------------------------------------------------------------------------- losses
def _brute_infonce(z, ids, live, tau):
    out = []
    for i in range(z.shape[0]):
        a = z[i, 0]
        logits = [a @ z[i, 1]] + [a @ n for n in z[i, 2:]]
        for j in range(z.shape[0]):
            if j != i and live[j] and ids[j, 1] not in (ids[i, 0], ids[i, 1]):
                logits.append(a @ z[j, 1])
        logits = np.array(logits) / tau
        out.append(-(logits[0] - np.log(np.exp(logits).sum())))
    return np.array(out)


def _brute_triplet(z, margin):
    out = []
    for i in range(z.shape[0]):
        a, p = z[i, 0], z[i, 1]
        out.append(np.mean([max(0.0, np.linalg.norm(a - p) - np.linalg.norm(a - n) + margin) for n in z[i, 2:]]))
    return np.array(out)


@pytest.mark.parametrize("negatives", [0, 2])
def test_infonce_matches_brute_force_per_tuple(compose_cfg, negatives):
    _, _, module, _, loader = _setup(compose_cfg, f"selector.negatives={negatives}", "data.batch_size=48", "task.temperature=0.2")
    batch = _first_batch(loader)
    s = 2 + negatives
    t = batch["x"].shape[0] // s
    batch["mask"] = batch["mask"].clone()
    batch["mask"][(t - 1) * s :] = False  # the last tuple as padding: masked, and no one's negative
    (term,) = module.task.loss_terms(module, batch)
    assert term.loss.shape == (t,) and term.mask.tolist() == [True] * (t - 1) + [False]
    with torch.no_grad():
        z = module.task.embed(module, batch["x"]).double().view(t, s, -1).numpy()
    ids = batch["index"].view(t, s).numpy()
    expected = _brute_infonce(z, ids, term.mask.numpy(), 0.2)
    np.testing.assert_allclose(term.loss.detach().double().numpy(), expected, rtol=1e-4, atol=1e-5)
    loss, live = combine([term], "mean")
    assert live == t - 1
    np.testing.assert_allclose(float(loss.detach()), expected[:-1].mean(), rtol=1e-4)
    loss.backward()
    grads = [p.grad for p in module.model.body.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads), "masked logits keep gradients finite"


def test_triplet_matches_brute_force_per_tuple(compose_cfg):
    _, _, module, _, loader = _setup(compose_cfg, "selector.negatives=3", "data.batch_size=50", "task.loss=triplet", "task.margin=0.5")
    batch = _first_batch(loader)
    (term,) = module.task.loss_terms(module, batch)
    t = batch["x"].shape[0] // 5
    with torch.no_grad():
        z = module.task.embed(module, batch["x"]).double().view(t, 5, -1).numpy()
    np.testing.assert_allclose(term.loss.detach().double().numpy(), _brute_triplet(z, 0.5), rtol=1e-4, atol=1e-5)
    assert torch.equal(term.weight, batch["weight"].view(t, 5)[:, 0])


# ----------------------------------------------------------------------------------- metrics
def _brute_retrieval(q, qy, c, cy, ks, self_ids=None):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    sims = qn @ cn.T
    if self_ids is not None:
        sims[np.arange(q.shape[0]), self_ids] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    if self_ids is not None:
        order = order[:, :-1]
    hits = cy[order] == qy[:, None]
    out = {f"recall@{k}": hits[:, :k].any(axis=1).mean() for k in ks}
    top = hits[:, : max(ks)]
    out["mrr"] = np.mean([1.0 / (np.argmax(h) + 1) if h.any() else 0.0 for h in top])
    return out


@pytest.mark.parametrize("self_search", [False, True])
def test_retrieval_metrics_match_brute_force(self_search):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    cy = rng.integers(0, 6, size=400)
    c = (centres[cy] + 1.5 * rng.normal(size=(400, 16))).astype(np.float32)
    if self_search:
        q, qy, self_ids = c[:150], cy[:150], np.arange(150)
    else:
        qy = rng.integers(0, 6, size=120)
        q, self_ids = (centres[qy] + 1.5 * rng.normal(size=(120, 16))).astype(np.float32), None
    got = retrieval_metrics(q, qy, c, cy, [1, 3, 10], self_ids=self_ids)
    want = _brute_retrieval(q.astype(np.float64), qy, c.astype(np.float64), cy, [1, 3, 10], self_ids)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert 0.0 < got["recall@1"] < got["recall@10"] <= 1.0


def test_retrieval_search_is_memory_bounded():
    c = np.random.default_rng(1).normal(size=(2000, 32)).astype(np.float32)
    with pytest.raises(MemoryCapExceeded):
        retrieval_metrics(c, np.zeros(2000, dtype=np.int64), c, np.zeros(2000, dtype=np.int64), [1], memory_cap_gb=1e-6)


# ----------------------------------------------------------------------------------- tuples in batches
def test_batches_hold_whole_tuples_in_tuple_order(compose_cfg):
    _, _, _, dm, loader = _setup(compose_cfg, "selector.negatives=1", "data.batch_size=64")
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        tuples = dm.controller.tuples(epoch)
        seen = []
        for batch in loader:
            assert batch["index"].shape[0] % 3 == 0 and batch["index"].shape[0] <= 63
            rows = batch["index"].view(-1, 3).numpy()
            assert np.all(batch["mask"].view(-1, 3).numpy().all(axis=1) | ~batch["mask"].view(-1, 3).numpy().any(axis=1))
            seen.append(rows[batch["mask"].view(-1, 3)[:, 0].numpy()])
        seen = np.concatenate(seen)
        assert seen.shape == tuples.shape
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, tuples.tolist())), "every tuple once, whole, in order"
    labels = dm.train_ds.labels()
    assert np.all(labels[tuples[:, 0]] == labels[tuples[:, 1]]) and np.all(labels[tuples[:, 2:]] != labels[tuples[:, :1]])


def test_rank_shards_are_disjoint_whole_tuples(compose_cfg):
    _, _, _, dm, _ = _setup(compose_cfg, "selector.negatives=1", "selector.fraction=0.3")
    tuples = dm.controller.tuples(0)
    shards = [TupleBatchSampler(dm.controller, 30, num_replicas=3, rank=r).shard(0) for r in range(3)]
    assert len({s[0].shape[0] for s in shards}) == 1, "every rank runs the same number of tuples"
    live = [s[0][s[1]] for s in shards]
    sets = [set(map(tuple, x.tolist())) for x in live]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sorted(map(tuple, np.concatenate(live).tolist())) == sorted(map(tuple, tuples.tolist()))


# ----------------------------------------------------------------------------------- end to end
def _embedded(module, task, ds):
    with torch.no_grad():
        batch = ds.gather(torch.arange(len(ds)))
        return task.embed(module, batch["x"]).numpy(), batch["y"].numpy()


def _val_metrics(module, source, task):
    """The task's validation metrics computed in this process, by hand."""
    module.eval()
    z, y = _embedded(module, task, source.val)
    nq = len(y) if task.max_queries is None else min(task.max_queries, len(y))
    if task.corpus == "train":
        cz, cy = _embedded(module, task, source.train)
        return retrieval_metrics(z[:nq], y[:nq], cz, cy, task.recall_k)
    return retrieval_metrics(z[:nq], y[:nq], z, y, task.recall_k, self_ids=np.arange(nq))


def test_training_on_tuples_beats_the_untrained_model(compose_cfg, tmp_path):
    cfg = compose_cfg(*TUPLES, "selector.negatives=2", "data.batch_size=96", "trainer.max_epochs=4", "model.hidden=[64,32]")
    pl.seed_everything(cfg.seed, verbose=False)
    source = build_source(cfg)
    untrained = _val_metrics(build_module(cfg, source.meta), source, Contrastive())
    out = tmp_path / "c"
    summary = run(cfg, out)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["monitor"] == "val_recall@1" and summary["task"] == "contrastive"
    assert {"val_recall@1", "val_recall@5", "val_recall@10", "val_mrr"} <= set(rows[-1])
    final = rows[-1]["val_recall@1"]
    assert final > untrained["recall@1"] + 0.05, (untrained, rows[-1])
    assert rows[-1]["val_mrr"] > untrained["mrr"]
    z = np.load(out / "selections" / "epoch_0003.npz")
    assert z["tuples"].shape[1] == 4 and z["tuples"].dtype == np.int64
    assert summary["selection_size"] == summary["train_size"], "fraction 1: one tuple per training image"


def test_train_corpus_retrieval(compose_cfg, tmp_path):
    summary = run(compose_cfg(*TUPLES, "task.corpus=train", "task.max_queries=100", "trainer.max_epochs=1"), tmp_path / "t")
    assert 0.5 < summary["final"]["val_recall@1"] <= summary["final"]["val_recall@10"] <= 1.0


# ----------------------------------------------------------------------------------- bad input
def test_bad_settings_name_the_setting(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"task\.loss"):
        build_module(compose_cfg(*TUPLES, "task.loss=npair"), {"input_shape": (64,), "num_classes": 10})
    for key, value in (("temperature", 0), ("margin", -1), ("recall_k", "[0]"), ("corpus", "test"), ("max_queries", 0)):
        with pytest.raises(ConfigError, match=rf"task\.{key}"):
            build_module(compose_cfg(*TUPLES, f"task.{key}={value}"), {"input_shape": (64,), "num_classes": 10})
    unlabelled = Contrastive()
    unlabelled.setup({"input_shape": (64,)})
    with pytest.raises(ConfigError, match="labels"):
        unlabelled.check_model(None)
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        run(compose_cfg(*TUPLES, "selector.negatives=4", "data.batch_size=5"), tmp_path / "small")
    with pytest.raises(ConfigError, match="tuple selector"):
        run(compose_cfg("task=contrastive", "selector=rs2"), tmp_path / "rs2")
    with pytest.raises(ConfigError, match=r"selector\.negatives"):
        run(compose_cfg(*TUPLES, "task.loss=triplet", "selector.negatives=0"), tmp_path / "triplet")


# ----------------------------------------------------------------------------------- DDP
@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["val", "train"])
def test_two_process_ddp_whole_disjoint_tuples_and_single_process_metrics(compose_cfg, tmp_path, corpus):
    out = tmp_path / "ddp"
    overrides = TUPLES + ["selector.fraction=0.5", "selector.negatives=2", "data.batch_size=60", f"task.corpus={corpus}"]
    proc = subprocess.run(
        TRAIN + CLI_FAST + overrides + [
            "trainer.max_epochs=2", "trainer.strategy=ddp", "trainer.devices=2", "data.record_shards=true", f"hydra.run.dir={out}",
        ],
        capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for epoch in range(2):
        tuples = np.load(out / "selections" / f"epoch_{epoch:04d}.npz")["tuples"]
        shards = [np.load(out / "shards" / f"epoch_{epoch:04d}_rank_{r}.npz") for r in range(2)]
        assert shards[0]["tuples"].shape == shards[1]["tuples"].shape and shards[0]["tuples"].shape[1] == 4
        live = [s["tuples"][s["live"]] for s in shards]
        sets = [set(map(tuple, x.tolist())) for x in live]
        assert not sets[0] & sets[1], "ranks train on disjoint tuples"
        assert sorted(map(tuple, np.concatenate(live).tolist())) == sorted(map(tuple, tuples.tolist())), "together: the epoch's tuples"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    cfg = compose_cfg(*overrides)
    source = build_source(cfg)
    module = build_module(cfg, source.meta)
    module.load_state_dict(torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"])
    single = _val_metrics(module, source, module.task)
    final = summary["final"]
    for key, value in single.items():
        assert final[f"val_{key}"] == pytest.approx(value, abs=1e-9), key
