"""In-batch miners against brute-force references: every triple is a valid (anchor, positive,
negative) of usable rows, batch-hard picks the farthest positive and nearest negative, semi-hard the
nearest negative inside the margin window; no gradients; bad input is refused in one line."""

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit_plugins.hard_negatives.inbatch import BatchHardMiner, SemiHardMiner


def _batch(seed, b=40, d=6, classes=4):
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1).float()
    y = torch.randint(0, classes, (b,), generator=g)
    mask = torch.rand(b, generator=g) > 0.15
    ids = torch.randint(0, b // 2 * 3, (b,), generator=g)  # some items appear twice
    return z, y, mask, ids


def _dist(z):
    z = z.double().numpy()
    return np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))


def _usable(y, mask, ids, i, j):
    return bool(mask[i] and mask[j] and y[i] >= 0 and y[j] >= 0)


def _brute_batch_hard(z, y, mask, ids):
    d, out = _dist(z), []
    y, mask, ids = y.numpy(), mask.numpy(), ids.numpy()
    for i in range(len(y)):
        pos = [j for j in range(len(y)) if _usable(y, mask, ids, i, j) and y[j] == y[i] and ids[j] != ids[i]]
        neg = [j for j in range(len(y)) if _usable(y, mask, ids, i, j) and y[j] != y[i]]
        if pos and neg:
            out.append((i, max(pos, key=lambda j: (d[i, j], -j)), min(neg, key=lambda j: (d[i, j], j))))
    return out


def _brute_semi_hard(z, y, mask, ids, margin):
    d, out = _dist(z), []
    y, mask, ids = y.numpy(), mask.numpy(), ids.numpy()
    for i in range(len(y)):
        for p in range(len(y)):
            if not (_usable(y, mask, ids, i, p) and y[p] == y[i] and ids[p] != ids[i]):
                continue
            window = [n for n in range(len(y)) if _usable(y, mask, ids, i, n) and y[n] != y[i] and d[i, p] < d[i, n] < d[i, p] + margin]
            if window:
                out.append((i, p, min(window, key=lambda n: (d[i, n], n))))
    return out


def _triples(out):
    return list(zip(*(t.tolist() for t in out)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_matches_brute_force(seed):
    z, y, mask, ids = _batch(seed)
    y[3] = -1  # an unlabelled row is never used
    miner = BatchHardMiner()
    got = _triples(miner(z, y, mask=mask, ids=ids))
    want = _brute_batch_hard(z, y, mask, ids)
    assert got == want
    assert miner.last_stats["triples"] == len(want) == miner.last_stats["anchors"]
    assert all(t[0] != 3 and t[1] != 3 and t[2] != 3 for t in got)


@pytest.mark.parametrize("seed,margin", [(0, 0.2), (1, 0.5), (2, 2.5)])
def test_semi_hard_matches_brute_force(seed, margin):
    z, y, mask, ids = _batch(seed)
    miner = SemiHardMiner(margin=margin)
    got = _triples(miner(z, y, mask=mask, ids=ids))
    want = _brute_semi_hard(z, y, mask, ids, margin)
    assert got == want and len(want) > 0
    assert miner.last_stats["pairs"] - miner.last_stats["pairs_without_semi_hard"] == len(want)


def test_semi_hard_blocks_agree_with_one_block(monkeypatch):
    import selectkit_plugins.hard_negatives.inbatch as inbatch

    z, y, mask, ids = _batch(5, b=50)
    whole = _triples(SemiHardMiner(0.4)(z, y, mask=mask, ids=ids))
    monkeypatch.setattr(inbatch, "_BLOCK_ELEMENTS", 50 * 50 * 3)  # blocks of 3 anchors
    assert _triples(SemiHardMiner(0.4)(z, y, mask=mask, ids=ids)) == whole


def test_triples_are_valid_and_ungraded():
    z, y, mask, ids = _batch(7)
    z.requires_grad_(True)
    for miner in (BatchHardMiner(), SemiHardMiner(1.0)):
        a, p, n = miner(z, y, mask=mask, ids=ids)
        assert a.dtype == p.dtype == n.dtype == torch.int64 and a.shape == p.shape == n.shape
        assert not a.requires_grad
        assert bool((y[a] == y[p]).all() and (y[a] != y[n]).all() and (ids[a] != ids[p]).all())
        assert bool(mask[a].all() and mask[p].all() and mask[n].all())


def test_no_pairs_no_triples():
    z = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    for miner in (BatchHardMiner(), SemiHardMiner()):
        a, p, n = miner(z, torch.arange(6))  # every label once: no positive anywhere
        assert a.numel() == p.numel() == n.numel() == 0


def test_bad_input_is_one_line():
    z = torch.randn(5, 3)
    with pytest.raises(ConfigError, match="one label per row"):
        BatchHardMiner()(z, torch.zeros(4, dtype=torch.int64))
    bad = z.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        BatchHardMiner()(bad, torch.zeros(5, dtype=torch.int64))
    with pytest.raises(ConfigError, match=r"task\.miner\.margin"):
        SemiHardMiner(margin=0)


# ----------------------------------------------------------------------------------- in the pipeline
MINER = "selectkit_plugins.hard_negatives.inbatch"
LOSSES = "selectkit_plugins.hard_negatives.losses"


def _compose(tmp_path, *overrides):
    from selectkit.testing import compose_train_config

    return compose_train_config(tmp_path, "model.hidden=[64,32]", "task=contrastive", "selector=random_tuples", *overrides)


def test_task_loss_runs_over_the_mined_triples(tmp_path):
    """One batch through the task: the loss term has one row per mined triple, weighted by its anchor."""
    from selectkit.lightning import SelectionDataModule
    from selectkit.tasks.contrastive import triplet_losses
    from selectkit.train import build_module, build_pipeline, build_source, loader_settings

    cfg = _compose(tmp_path, "selector.negatives=0", "data.batch_size=64", "task.loss=triplet", f"task.miner={{_target_:{MINER}.SemiHardMiner,margin:0.5}}")
    source = build_source(cfg)
    module = build_module(cfg, source.meta)
    dm = SelectionDataModule(source, build_pipeline(cfg), **loader_settings(cfg))
    dm.setup()
    loader = dm.train_dataloader()
    module.task.bind_tuples(loader.batch_sampler)
    loader.batch_sampler.set_epoch(0)
    batch = next(iter(loader))
    module.eval()
    (term,) = module.task.loss_terms(module, batch)
    with torch.no_grad():
        z = module.task.embed(module, batch["x"])
    a, p, n = SemiHardMiner(0.5)(z, batch["y"], mask=batch["mask"], ids=batch["index"])
    assert term.loss.shape[0] == a.shape[0] > 0
    want = triplet_losses(z[torch.stack([a, p, n], 1)], module.task.margin)
    torch.testing.assert_close(term.loss.detach(), want)
    torch.testing.assert_close(term.weight, batch["weight"][a])


@pytest.mark.parametrize("task", [
    ["task.loss=triplet", f"task.miner={{_target_:{MINER}.BatchHardMiner}}"],
    [f"task.loss={{_target_:{LOSSES}.HardNegativeContrastiveLoss,beta:2.0,temperature:0.1}}"],
])
def test_training_end_to_end_beats_the_untrained_model(tmp_path, task):
    """A real Lightning run on digits (two epochs): recall@1 by label beats the untrained network's."""
    import json

    import lightning.pytorch as pl

    from selectkit.tasks.contrastive import retrieval_metrics
    from selectkit.train import build_module, build_source, run

    cfg = _compose(tmp_path, "selector.negatives=0", "data.batch_size=96", "trainer.max_epochs=2", *task)
    pl.seed_everything(cfg.seed, verbose=False)
    source = build_source(cfg)
    module = build_module(cfg, source.meta)
    module.eval()
    with torch.no_grad():
        batch = source.val.gather(torch.arange(len(source.val)))
        z = module.task.embed(module, batch["x"]).numpy()
    y = batch["y"].numpy()
    untrained = retrieval_metrics(z, y, z, y, [1], self_ids=np.arange(len(y)))
    summary = run(cfg, tmp_path / "run")
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "completed" and len(rows) == 2
    assert rows[-1]["val_recall@1"] > untrained["recall@1"] + 0.05, (untrained, rows[-1])


def test_a_batch_with_nothing_to_mine_gives_a_zero_loss_on_the_graph():
    from types import SimpleNamespace

    from selectkit.models import MLP, ModelAdapter
    from selectkit.tasks import Contrastive, combine

    net = MLP(in_features=4, hidden=[3], num_classes=2, dropout=0.0)
    task = Contrastive(loss="triplet", miner=BatchHardMiner())
    task.setup({"num_classes": 2, "input_shape": (4,)})
    task.bind_tuples(SimpleNamespace(tuple_size=2))
    module = SimpleNamespace(adapter=ModelAdapter(net))
    batch = {"x": torch.randn(6, 4), "y": torch.zeros(6, dtype=torch.int64), "index": torch.arange(6),
             "weight": torch.ones(6), "mask": torch.ones(6, dtype=torch.bool)}
    loss, live = combine(task.loss_terms(module, batch))
    assert live == 0 and float(loss.detach()) == 0.0
    loss.backward()  # still a graph: the training step does not fail on a batch of one label
    grads = [p.grad for p in net.body.parameters()]
    assert all(g is not None and float(g.abs().sum()) == 0.0 for g in grads)
    batch["y"] = torch.tensor([0, 0, 0, 1, 1, 1])
    loss, live = combine(task.loss_terms(module, batch))
    assert live == 6 and loss.requires_grad
