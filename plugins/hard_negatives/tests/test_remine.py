"""hard_negatives with remine_every_steps: re-mining against a snapshot agrees with the selector's own
mining and with a dense brute force, respects every exclusion, is seeded by (seed, epoch, step),
handles short tuples per on_short; in Lightning training the snapshot is refreshed exactly at the
scheduled steps with the current network, batches carry the re-mined negatives' inputs, a run resumed
at an epoch boundary or with loader workers trains identically, and under 2-process DDP every rank
uses the same snapshot."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selectkit.data.arrays import MappedArrays
from selectkit.errors import ConfigError
from selectkit.providers import PoolScorer, embed_batch, pairs_provider
from selectkit.selector import Pool, SelectContext
from selectkit_plugins.hard_negatives import HardNegatives
from selectkit_plugins.hard_negatives.remine import StepRemining


def _labelled(n=150, d=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.8 * rng.normal(size=(classes, d)).astype(np.float32)[labels]
    return x, labels


def _module(shift=None):
    """A stand-in for the training module whose embedding is its input (plus ``shift``)."""
    embed = (lambda x: x) if shift is None else (lambda x: x + shift)
    return SimpleNamespace(adapter=SimpleNamespace(model=torch.nn.Identity(), embed=embed), device="cpu", current_epoch=0)


def _hook(sel, x, labels, shift=None, seed=0):
    hook = sel.training_hook()
    assert isinstance(hook, StepRemining)
    hook.seed = seed
    hook.wrap_dataset(MappedArrays(x, labels))
    hook.snapshot = hook.refresh(_module(shift))
    return hook


def _batch(x, labels, tuples):
    ids = torch.as_tensor(tuples.reshape(-1))
    return {"x": torch.as_tensor(x[ids.numpy()]), "y": torch.as_tensor(labels[ids.numpy()]), "index": ids,
            "weight": torch.ones(ids.shape[0]), "mask": torch.ones(ids.shape[0], dtype=torch.bool)}


def _dense_top(vectors, anchors, excluded, corpus, k):
    """Brute force: per anchor the ``k`` corpus items of highest cosine score not in ``excluded[i]``."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    s = v[anchors] @ v[corpus].T
    out = []
    for i in range(len(anchors)):
        order = [corpus[j] for j in np.argsort(-s[i], kind="stable") if corpus[j] not in excluded[i]]
        out.append(order[:k])
    return out


# ----------------------------------------------------------------------------------- settings
def test_bad_settings_fail_in_one_line_naming_the_setting():
    x, labels = _labelled()
    pool = Pool(len(x), labels=labels, embeddings=x)
    for bad in (0, -2, 1.5, "x", True):
        with pytest.raises(ConfigError, match=r"remine_every_steps") as err:
            HardNegatives(remine_every_steps=bad).select(pool, SelectContext(seed=0))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"remine_every_steps=3 .*needs space=embeddings") as err:
        HardNegatives(remine_every_steps=3, space="vectors").select(Pool(len(x), labels=labels, vectors=x), SelectContext(seed=0))
    assert HardNegatives().training_hook() is None, "null: no hook, today's behaviour"


def test_bad_setting_in_the_config(compose_cfg, tmp_path):
    from selectkit.train import run

    with pytest.raises(ConfigError, match=r"remine_every_steps"):
        run(compose_cfg("task=contrastive", "selector=hard_negatives", "selector.remine_every_steps=0"), tmp_path / "zero")


# ----------------------------------------------------------------------------------- mining
@pytest.mark.parametrize("params", [{}, {"rank_min": 2, "rank_max": 12}, {"relative_margin": 0.2, "false_negative_ratio": 0.9},
                                    {"metric": "l2", "absolute_margin": 0.5}, {"exclude_same_label": False, "max_score": 0.8}])
def test_remining_an_unchanged_snapshot_reproduces_the_selection(params):
    x, labels = _labelled()
    sel = HardNegatives(negatives=3, depth=4, max_depth=150, remine_every_steps=2, **params)
    out = sel.select(Pool(len(x), labels=labels, embeddings=x), SelectContext(seed=3))
    hook = _hook(sel, x, labels)
    got = hook.mine_tuples(out.anchors, out.positives, seed=11)
    assert np.array_equal(got.negatives, out.negatives), "the same mine call and settings on the same vectors"
    assert not got.short.any()


def test_remined_negatives_equal_a_dense_brute_force_and_respect_every_exclusion():
    x, labels = _labelled()
    sel = HardNegatives(negatives=3, depth=4, max_depth=150, remine_every_steps=1)
    out = sel.select(Pool(len(x), labels=labels, embeddings=x), SelectContext(seed=3))
    # the network moved since the selection: its embedding of every row is another one
    moved = x + np.random.default_rng(7).normal(scale=0.6, size=x.shape).astype(np.float32)
    hook = _hook(sel, moved, labels)
    assert np.array_equal(hook.snapshot.vectors, moved), "the snapshot is the current embedding"
    got = hook.mine_tuples(out.anchors, out.positives, seed=0)
    excluded = [{int(a), int(p)} | set(np.flatnonzero(labels == labels[a]).tolist()) for a, p in zip(out.anchors, out.positives)]
    ref = _dense_top(moved, out.anchors, excluded, np.arange(len(x)), 3)
    assert got.negatives.tolist() == ref
    assert np.all(labels[got.negatives] != labels[out.anchors][:, None]) and np.all(got.negatives != out.positives[:, None])
    assert not np.array_equal(got.negatives, out.negatives), "moved embeddings, other negatives"


def _pairs(n_queries=40, n_docs=150, d=8, seed=1):
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, d)).astype(np.float32)
    rows = [(q, n_queries + int(doc)) for q in range(n_queries) for doc in rng.choice(n_docs, size=rng.integers(1, 4), replace=False)]
    pairs = np.array(rows, dtype=np.int64)
    queries = np.stack([docs[pairs[pairs[:, 0] == q][0, 1] - n_queries] + 0.5 * rng.normal(size=d) for q in range(n_queries)]).astype(np.float32)
    return np.concatenate([queries, docs]), pairs


def test_pairs_exclude_every_given_positive_and_only_documents_are_negatives():
    x, pairs = _pairs()
    labels = np.zeros(len(x), dtype=np.int64)
    pool = Pool(len(x), providers={"pairs": pairs_provider(pairs[:, 0], pairs[:, 1])}, embeddings=x)
    sel = HardNegatives(negatives=4, depth=6, max_depth=200, remine_every_steps=3, relative_margin=0.05)
    out = sel.select(pool, SelectContext(seed=0))
    hook = _hook(sel, x, labels, shift=0.3 * torch.as_tensor(np.random.default_rng(2).normal(size=x.shape[1]).astype(np.float32)))
    got = hook.mine_tuples(out.anchors, out.positives, seed=0)
    docs = set(range(40, len(x)))
    for a, row, short in zip(out.anchors.tolist(), got.negatives.tolist(), got.short):
        given = set(pairs[pairs[:, 0] == a, 1].tolist())
        live = [n for n in row if n >= 0]
        assert not set(live) & given, "no given positive of the anchor, whichever pair the tuple is"
        assert set(live) <= docs and (short or len(live) == 4)
    plain = _hook(sel, x, labels)
    assert np.array_equal(plain.mine_tuples(out.anchors, out.positives, seed=0).negatives, out.negatives)


def test_batches_get_the_new_negatives_inputs_and_keep_anchors_and_positives():
    x, labels = _labelled()
    sel = HardNegatives(negatives=2, depth=8, remine_every_steps=1)
    out = sel.select(Pool(len(x), labels=labels, embeddings=x), SelectContext(seed=0))
    tuples = np.concatenate([out.anchors[:, None], out.positives[:, None], out.negatives], axis=1)[:20]
    batch = _batch(x, labels, tuples)
    batch["mask"].view(20, 4)[19] = False
    hook = _hook(sel, x, labels, shift=torch.linspace(-1, 1, x.shape[1]))
    new, (count, changed, short, padded) = hook.remine(batch, seed=0)
    ids = new["index"].view(20, 4).numpy()
    assert np.array_equal(ids[:, :2], tuples[:, :2]) and np.array_equal(ids[19], tuples[19]), "anchors, positives and padding stay"
    expect = hook.mine_tuples(tuples[:19, 0], tuples[:19, 1], seed=0).negatives
    assert np.array_equal(ids[:19, 2:], expect)
    assert torch.equal(new["x"], torch.as_tensor(x[new["index"].numpy()])) and torch.equal(new["y"], torch.as_tensor(labels[new["index"].numpy()]))
    assert torch.equal(new["mask"], batch["mask"]) and torch.equal(new["weight"], batch["weight"])
    assert count == 19 and changed == int((np.sort(expect, 1) != np.sort(tuples[:19, 2:], 1)).any(1).sum()) > 0 and short == padded == 0


def test_same_seed_same_negatives_and_draws_keyed_by_epoch_and_step():
    x, labels = _labelled()
    sel = HardNegatives(negatives=3, sampling="random", rank_max=30, remine_every_steps=2)
    out = sel.select(Pool(len(x), labels=labels, embeddings=x), SelectContext(seed=0))
    hook = _hook(sel, x, labels, seed=4)
    assert hook.step_seed(1, 5) == _hook(sel, x, labels, seed=4).step_seed(1, 5)
    seeds = {hook.step_seed(e, s) for e in range(3) for s in range(3)}
    assert len(seeds) == 9 and hook.step_seed(0, 0) != _hook(sel, x, labels, seed=5).step_seed(0, 0)
    a = hook.mine_tuples(out.anchors, out.positives, seed=hook.step_seed(1, 4)).negatives
    b = _hook(sel, x, labels, seed=4).mine_tuples(out.anchors, out.positives, seed=hook.step_seed(1, 4)).negatives
    c = hook.mine_tuples(out.anchors, out.positives, seed=hook.step_seed(1, 6)).negatives
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_short_tuples_follow_on_short():
    x, labels = _labelled()
    sel = HardNegatives(negatives=2, remine_every_steps=1)
    out = sel.select(Pool(len(x), labels=labels, embeddings=x), SelectContext(seed=0))
    tuples = np.concatenate([out.anchors[:, None], out.positives[:, None], out.negatives], axis=1)[:12]
    for on_short in ("skip", "pad", "error"):
        strict = HardNegatives(negatives=2, remine_every_steps=1, depth=6, max_depth=6, on_short=on_short)
        strict._plan = sel.plan
        hook = _hook(strict, x, labels)
        found = hook.mine_tuples(tuples[:, 0], tuples[:, 1], seed=0)
        assert found.short.any() and not found.short.all()
        if on_short == "error":
            with pytest.raises(ConfigError, match=r"on_short=error: re-mining at epoch 0, step 3: \d+ of 12 tuples") as err:
                hook.remine(_batch(x, labels, tuples), seed=0, where="epoch 0, step 3")
            assert "\n" not in str(err.value)
            continue
        new, (count, _, short, padded) = hook.remine(_batch(x, labels, tuples), seed=0)
        assert count == 12 and short == int(found.short.sum())
        ids, mask = new["index"].view(12, 4).numpy(), new["mask"].view(12, 4).numpy()
        if on_short == "skip":
            assert np.array_equal(mask.all(1), ~found.short) and not mask[found.short].any(), "short tuples are masked out whole"
            assert np.array_equal(ids[found.short], tuples[found.short]) and padded == 0
        else:
            assert mask.all() and padded > 0 and (ids >= 0).all()
            assert np.all(labels[ids[:, 2:]] != labels[ids[:, :1]])


# ----------------------------------------------------------------------------------- in training
@pytest.fixture
def compose_cfg(tmp_path):
    from selectkit.testing import compose_train_config

    return lambda *overrides: compose_train_config(tmp_path, *overrides)


COMMON = ("task=contrastive", "selector=hard_negatives", "selector.negatives=2", "selector.fraction=0.5", "optim.scheduler=null", "data.batch_size=96")


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_refreshes_on_schedule_with_the_current_network_and_batches_match_a_brute_force(compose_cfg, tmp_path, monkeypatch):
    from selectkit.train import run

    seen = []
    original = StepRemining.prepare_batch

    def spy(self, module, batch, batch_idx):
        before = self.snapshot
        given = {k: v.clone() for k, v in batch.items()}
        out = original(self, module, batch, batch_idx)
        fresh = self.snapshot is not before
        if fresh:
            now = PoolScorer(module.adapter, self.dataset, device=module.device, progress=False).score(self.snapshot.items, embed_batch, "embeddings")
            assert np.array_equal(now, self.snapshot.vectors), "refreshed with the network of this step"
        seen.append((int(module.current_epoch), int(batch_idx), fresh, given, out, self.snapshot, self.selector.plan))
        return out

    monkeypatch.setattr(StepRemining, "prepare_batch", spy)
    out = tmp_path / "run"
    run(compose_cfg(*COMMON, "selector.remine_every_steps=4", "trainer.max_epochs=2"), out)
    for epoch in (0, 1):
        steps = [s for e, s, *_ in seen if e == epoch]
        assert steps == list(range(len(steps))) and len(steps) > 8
        assert [s for e, s, fresh, *_ in seen if e == epoch and fresh] == list(range(0, len(steps), 4)), "at step 0 and every 4 steps"
    for epoch, step, fresh, given, new, snap, plan in seen:
        ids, old = new["index"].view(-1, 4).numpy(), given["index"].view(-1, 4).numpy()
        live = given["mask"].view(-1, 4)[:, 0].numpy()
        assert np.array_equal(ids[:, :2], old[:, :2])
        anchors = ids[live, 0]
        lab = {int(i): int(y) for i, y in zip(new["index"].tolist(), new["y"].tolist())}
        lab.update({int(i): int(y) for i, y in zip(given["index"].tolist(), given["y"].tolist())})
        corpus_labels = plan["corpus_labels"]
        excluded = [{int(a), int(p)} | set(plan["corpus"][corpus_labels == lab[int(a)]].tolist()) for a, p in zip(anchors, ids[live, 1])]
        vectors = np.zeros((int(snap.items.max()) + 1, snap.vectors.shape[1]), dtype=np.float32)
        vectors[snap.items] = snap.vectors
        assert ids[live, 2:].tolist() == _dense_top(vectors, anchors, excluded, plan["corpus"], 2), f"epoch {epoch} step {step}"
        assert all(lab[int(n)] != lab[int(a)] for a, row in zip(anchors, ids[live, 2:]) for n in row)
    rows = _rows(out)
    for row in rows:
        summary = row["hooks"]["hard_negatives"]
        steps = [s for e, s, *_ in seen if e == row["epoch"]]
        assert summary["refresh_steps"] == list(range(0, len(steps), 4)) and summary["ranks_agree"]
        assert summary["tuples"] == sum(int(g["mask"].view(-1, 4)[:, 0].sum()) for e, _, _, g, *_ in seen if e == row["epoch"])
        assert len(summary["per_refresh"]) == summary["refreshes"] == len(summary["snapshots"])
    assert rows[0]["hooks"]["hard_negatives"]["per_refresh"][0]["changed"] <= 2, "step 0 of epoch 0: the selection's own network"
    assert rows[1]["hooks"]["hard_negatives"]["changed_share"] > 0.5, "a trained network, other negatives"


@pytest.mark.slow
def test_a_run_resumed_at_an_epoch_boundary_trains_identically(compose_cfg, tmp_path):
    from selectkit.train import run

    common = COMMON + ("selector.remine_every_steps=5", "selector.sampling=random", "selector.rank_max=20", "model.dropout=0.2")
    run(compose_cfg(*common, "trainer.max_epochs=3"), tmp_path / "whole")
    run(compose_cfg(*common, "trainer.max_epochs=2"), tmp_path / "part")
    run(compose_cfg(*common, "trainer.max_epochs=3", f"resume={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}"), tmp_path / "part")

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("train_s", "select_s")} for r in rows]

    whole, part = strip(_rows(tmp_path / "whole")), strip(_rows(tmp_path / "part"))
    assert len(whole) == 3 and whole == part, "same metrics, same snapshots and re-mining counts every epoch"
    assert len(set(whole[2]["hooks"]["hard_negatives"]["snapshots"])) == whole[2]["hooks"]["hard_negatives"]["refreshes"]
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_ddp_every_rank_uses_the_same_snapshot(tmp_path):
    out = tmp_path / "ddp"
    cli = ["data=digits", "model=mlp", "logger=none", "trainer.accelerator=cpu", "trainer.progress_bar=false"]
    proc = subprocess.run(
        [sys.executable, "-m", "selectkit.train", *cli, *COMMON, "selector.remine_every_steps=3", "trainer.max_epochs=2",
         "trainer.strategy=ddp", "trainer.devices=2", "data.record_shards=true", f"hydra.run.dir={out}"],
        capture_output=True, text=True, env=dict(os.environ, WANDB_MODE="disabled"), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in _rows(out):
        summary = row["hooks"]["hard_negatives"]
        assert summary["ranks_agree"], "every rank refreshed the same snapshots"
        tuples = np.load(out / "selections" / f"epoch_{row['epoch']:04d}.npz")["tuples"]
        shards = [np.load(out / "shards" / f"epoch_{row['epoch']:04d}_rank_{r}.npz") for r in range(2)]
        per_rank = -(-shards[0]["tuples"].shape[0] // (96 // 4))
        assert summary["tuples"] == tuples.shape[0] == sum(int(s["live"].sum()) for s in shards), "counts summed over ranks"
        assert summary["refresh_steps"] == list(range(0, per_rank, 3))


@pytest.mark.slow
def test_loader_workers_train_identically(compose_cfg, tmp_path):
    from selectkit.train import run

    common = COMMON + ("selector.remine_every_steps=3", "selector.sampling=random", "selector.rank_max=20", "trainer.max_epochs=2")
    rows = {}
    for workers in (0, 2):
        run(compose_cfg(*common, f"data.num_workers={workers}"), tmp_path / f"w{workers}")
        rows[workers] = [{k: v for k, v in r.items() if k not in ("train_s", "select_s")} for r in _rows(tmp_path / f"w{workers}")]
    assert rows[0] == rows[2], "the snapshot and the re-mining live in the main process: workers change nothing"
