"""``selectkit-select``: an offline selection over precomputed features, its manifest, training on it,
and the same manifest under torchrun with several gloo ranks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SELECT = [sys.executable, "-m", "selectkit.select"]
TRAIN = [sys.executable, "-m", "selectkit.train"]
ENV = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("pool")
    x, y = load_digits(return_X_y=True)
    np.save(folder / "x.npy", x.astype(np.float32))
    np.save(folder / "y.npy", y.astype(np.int64))
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=x.shape[0]).astype(np.float32)
    np.save(folder / "probs.npy", probs)
    return folder


def _select(pool, out, *overrides, launcher=()):
    args = [*launcher, *(SELECT if not launcher else ["-m", "selectkit.select"])]
    cmd = args + [f"data.train={{x: {pool / 'x.npy'}, y: {pool / 'y.npy'}}}", f"hydra.run.dir={out}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, cwd=out.parent)


def _indices(out):
    with np.load(out / "selections" / "epoch_0000.npz") as z:
        return z["indices"], (z["weights"] if "weights" in z.files else None)


def test_leverage_selection_writes_the_manifest_and_trains_on_it(pool, tmp_path):
    out = tmp_path / "sel"
    proc = _select(pool, out, "selector=leverage", "selector.budget=300")
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("selectkit-select: done: leverage selected 300 of 1797 items") and str(out / "selections") in last
    ids, weights = _indices(out)
    assert ids.shape == (300,) and np.unique(ids).size == 300 and weights is not None
    summary = json.loads((out / "select.json").read_text())
    assert summary["pool_size"] == 1797 and summary["selection_size"] == 300 and summary["world_size"] == 1
    assert summary["bytes_sent"] == [0]
    line = json.loads((out / "selections" / "manifest.jsonl").read_text().splitlines()[0])
    assert line["kind"] == "selection" and line["size"] == 300

    run = tmp_path / "train"
    proc = subprocess.run(
        TRAIN + [f"data=arrays", f"data.train={{x: {pool / 'x.npy'}, y: {pool / 'y.npy'}}}", "model=mlp", "logger=none",
                 "trainer.accelerator=cpu", "trainer.max_epochs=2", "trainer.progress_bar=false", "selector=manifest",
                 f"selector.path={out}", f"hydra.run.dir={run}"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for epoch in range(2):
        with np.load(run / "selections" / f"epoch_{epoch:04d}.npz") as z:
            assert np.array_equal(z["indices"], ids) and np.allclose(z["weights"], weights)


def test_precomputed_outputs_feed_an_acquisition(pool, tmp_path):
    out = tmp_path / "acq"
    proc = _select(pool, out, "selector=margin", "selector.budget=50", f"+outputs.probs={pool / 'probs.npy'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    probs = np.load(pool / "probs.npy")
    top2 = np.sort(probs, axis=1)[:, -2:]
    expected = np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:50]
    with np.load(out / "selections" / "epoch_0000.npz") as z:
        assert set(z["indices"].tolist()) == set(expected.tolist())


@pytest.mark.parametrize(
    "override, setting",
    [
        ("+outputs.probs=/nope.npy", "outputs.probs"),
        ("+outputs.logits=/nope.npy", "outputs.logits"),
        ("distributed.backend=mpi", "distributed.backend"),
        ("selector.budget=0", "selector.budget"),
    ],
)
def test_bad_settings_stop_in_one_line_without_a_manifest(pool, tmp_path, override, setting):
    out = tmp_path / "bad"
    proc = _select(pool, out, "selector=leverage", override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("selectkit-select: error: ") and setting in lines[0], proc.stderr
    assert not (out / "selections").exists() and not (out / "select.json").exists()


def _torchrun(nproc):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


@pytest.mark.ddp
def test_torchrun_two_ranks_write_the_world_one_manifest(pool, tmp_path):
    one, two = tmp_path / "w1", tmp_path / "w2"
    assert _select(pool, one, "selector=leverage", "selector.budget=300").returncode == 0
    proc = _select(pool, two, "selector=leverage", "selector.budget=300", launcher=_torchrun(2))
    assert proc.returncode == 0, proc.stderr[:3000] + proc.stderr[-1500:]
    assert proc.stdout.count("selectkit-select: done:") == 1, "rank 0 alone speaks"
    summary = json.loads((two / "select.json").read_text())
    assert summary["world_size"] == 2 and len(summary["bytes_sent"]) == 2 and min(summary["bytes_sent"]) >= 0
    (a, wa), (b, wb) = _indices(one), _indices(two)
    assert np.array_equal(a, b) and np.array_equal(wa, wb)


@pytest.mark.ddp
def test_torchrun_ranks_with_different_configs_are_refused(pool, tmp_path):
    # a RANK-dependent setting through the environment: every rank composes a different config
    out = tmp_path / "mismatch"
    proc = _select(pool, out, "selector=leverage", "run_name=${oc.env:RANK}", launcher=_torchrun(2))
    assert proc.returncode != 0
    assert "differs between ranks" in proc.stderr and not (out / "selections").exists()


@pytest.mark.ddp
def test_lightning_ddp_training_selects_what_one_process_selects(pool, tmp_path):
    """Sensitivity sampling inside a two-process DDP training run picks the one-process coreset."""
    common = TRAIN + [
        "data=arrays", f"data.train={{x: {pool / 'x.npy'}, y: {pool / 'y.npy'}}}", "model=mlp", "logger=none",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.progress_bar=false", "selector=sensitivity",
        "selector.embedding=features", "selector.cluster_term=size", "selector.size=200", "selector.k=8",
        "distributed.block_rows=256",
    ]
    runs = {}
    for world in (1, 2):
        out = tmp_path / f"ddp{world}"
        extra = ["trainer.strategy=ddp", f"trainer.devices={world}"] if world > 1 else []
        proc = subprocess.run(common + extra + [f"hydra.run.dir={out}"], capture_output=True, text=True, env=ENV, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(out / "selections" / "epoch_0000.npz") as z:
            runs[world] = (z["indices"], z["weights"])
    assert np.array_equal(runs[1][0], runs[2][0]) and np.array_equal(runs[1][1], runs[2][1])
