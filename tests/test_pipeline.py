"""Pipeline: chaining in global ids, schedules, weights, synthetic ids, state round-trip, checks."""

import numpy as np
import pytest

from selectkit import registry
from selectkit.errors import ConfigError
from selectkit.pipeline import Pipeline, Stage
from selectkit.selection import Selection, Synthetic
from selectkit.selector import Interval, Pool, SelectContext, Selector
from selectkit_plugins.random import RandomSubset
from selectkit_plugins.rs2 import RS2


def _pool_maker(n_labels=1000):
    labels = np.arange(n_labels) % 5

    def make(ids, weights):
        ids = np.arange(ids) if isinstance(ids, int) else ids
        return Pool(ids, weights=weights, labels=labels[ids] if ids.max(initial=-1) < n_labels else None)

    return make


class Halve(Selector):
    """Keeps the first half, weight 2."""

    name = "halve"

    def __init__(self):
        pass

    def _select(self, pool, ctx):
        n = len(pool) // 2
        return Selection(np.arange(n, dtype=np.int64), weights=np.full(n, 2.0, np.float32))


class Duplicator(Selector):
    """Adds one synthetic copy of item 0 and keeps everything."""

    name = "dup"
    creates_samples = True

    def __init__(self):
        pass

    def _select(self, pool, ctx):
        n = len(pool)
        syn = Synthetic(np.zeros((1, 1), np.float32), np.zeros(1, np.int64), np.array([[0, 1]]), np.array([0.5], np.float32))
        return Selection(np.arange(n + 1, dtype=np.int64), synthetic=syn)


def test_stages_chain_in_global_ids():
    pipe = Pipeline([Stage(RandomSubset(fraction=0.5), schedule="once"), Stage(RS2(fraction=0.2))], seed=0)
    pipe.check()
    first = pipe.run(0, 1000, _pool_maker())
    static = pipe._cache[0]["ids"]
    assert first.ids.size == 100 and np.isin(first.ids, static).all()
    second = pipe.run(1, 1000, _pool_maker())
    assert second.ran == ["rs2"], "the once stage is reused"
    assert np.isin(second.ids, static).all() and not np.array_equal(first.ids, second.ids)


def test_every_n_epochs():
    pipe = Pipeline([Stage(RS2(fraction=0.1), every=3)], seed=0)
    ran = [bool(pipe.run(e, 100, _pool_maker(100)).ran) for e in range(7)]
    assert ran == [True, False, False, True, False, False, True]


def test_weights_compose_and_synthetic_ids_follow_dataset():
    pipe = Pipeline([Stage(Duplicator(), schedule="once"), Stage(Halve())], seed=0)
    pipe.check()
    out = pipe.run(0, 10, lambda ids, w: Pool(ids, weights=w))
    assert out.ids.tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(out.weights, 2.0)
    assert pipe.num_synthetic == 1
    pipe2 = Pipeline([Stage(Duplicator(), schedule="once"), Stage(RandomSubset(fraction=1.0), schedule="once")], seed=0)
    out2 = pipe2.run(0, 10, lambda ids, w: Pool(ids, weights=w))
    assert 10 in out2.ids.tolist(), "the synthetic sample gets global id N"
    assert pipe2.synthetic[0][2].tolist() == [[0, 1]]


def test_state_round_trip_reproduces_sequence():
    def build():
        return Pipeline([Stage(RandomSubset(fraction=0.5), schedule="once"), Stage(RS2(fraction=0.2))], seed=4)

    a = build()
    seq = [a.run(e, 1000, _pool_maker()).ids for e in range(3)]
    b = build()
    for e in range(2):
        b.run(e, 1000, _pool_maker())
    c = build()
    c.load_state_dict(b.state_dict())
    assert np.array_equal(c.run(2, 1000, _pool_maker()).ids, seq[2])


def test_resume_with_other_seed_or_params_refused():
    a = Pipeline([Stage(RS2(fraction=0.2))], seed=4)
    a.run(0, 100, _pool_maker(100))
    with pytest.raises(ConfigError, match="seed"):
        Pipeline([Stage(RS2(fraction=0.2))], seed=5).load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="fraction"):
        Pipeline([Stage(RS2(fraction=0.3))], seed=4).load_state_dict(a.state_dict())


def test_checks_name_the_setting():
    with pytest.raises(ConfigError, match=r"pipeline.stages.0.schedule must be one of"):
        Pipeline([Stage(RS2(), schedule="weekly"), Stage(RS2())], seed=0).check()
    with pytest.raises(ConfigError, match=r"every must be an integer >= 1"):
        Pipeline([Stage(RS2(), every=0)], seed=0).check()
    with pytest.raises(ConfigError, match=r"pipeline.stages.0.start_epoch must be an integer >= 0"):
        Pipeline([Stage(RS2(), start_epoch=-1)], seed=0).check()
    with pytest.raises(ConfigError, match=r"pipeline.stages.1.start_epoch: random_tuples returns Tuples"):
        Pipeline([Stage(RS2()), Stage(registry.create("random_tuples"), start_epoch=2)], seed=0).check()
    with pytest.raises(ConfigError, match="before every per-epoch stage"):
        Pipeline([Stage(RS2()), Stage(Duplicator(), schedule="once")], seed=0).check()
    with pytest.raises(ConfigError, match="stages is empty"):
        Pipeline([], seed=0).check()


def test_registry_unknown_lists_installed_and_runtime_registration():
    with pytest.raises(ConfigError, match=r"unknown selector 'nope'; installed selectors: .*rs2"):
        registry.get("nope")
    with pytest.raises(ConfigError, match=r"selector.bogus is not a parameter of selector 'rs2'"):
        registry.create("rs2", bogus=1)

    class Tmp(Selector):
        name = "tmp_first"
        parameter_constraints = {"k": Interval(1, None, integer=True)}

        def __init__(self, *, k=1):
            self.k = k

        def _select(self, pool, ctx):
            return Selection.all(len(pool))

    registry.register()(Tmp)
    try:
        assert "tmp_first" in registry.available()
        with pytest.warns(UserWarning, match="already registered"):
            registry.register()(Tmp)
        sel = registry.create("tmp_first", config_path="pipeline.stages.x", k=0)
        with pytest.raises(ConfigError, match=r"pipeline.stages.x.k must be an integer in \[1, inf\]"):
            sel.select(Pool(np.arange(3)), SelectContext(seed=0))
    finally:
        registry.unregister("tmp_first")


def test_builtins_come_from_entry_points():
    table = registry.entries()
    for name in ("rs2", "random", "full"):
        assert table[name].distribution == "selectkit"
        assert table[name].target.startswith("selectkit_plugins.")


class EpochCopies(Selector):
    """Adds two synthetic copies of the pool's epoch-th item (so each run's samples differ)."""

    name = "epoch_copies"
    creates_samples = True

    def __init__(self):
        pass

    def _select(self, pool, ctx):
        n = len(pool)
        p = ctx.epoch % n
        syn = Synthetic(np.full((2, 1), ctx.epoch, np.float32), np.zeros(2, np.int64), np.array([[p, p], [p, p]]), np.array([0.0, 1.0], np.float32))
        return Selection(np.arange(n + 2, dtype=np.int64), synthetic=syn, meta={"epoch": ctx.epoch})


def test_start_epoch_passes_input_through_until_the_stage_starts():
    pipe = Pipeline([Stage(RandomSubset(fraction=0.5), schedule="once", start_epoch=2), Stage(RS2(fraction=0.2))], seed=0)
    pipe.check()
    outs = [pipe.run(e, 1000, _pool_maker()) for e in range(4)]
    assert [o.ran for o in outs] == [["rs2"], ["rs2"], ["random", "rs2"], ["rs2"]]
    assert all(o.ids.size == 200 for o in outs[:2]), "before its start the static stage passes all 1000 through"
    static = pipe._cache[0]["ids"]
    assert static.size == 500 and all(np.isin(o.ids, static).all() for o in outs[2:])
    assert not np.isin(outs[0].ids, static).all() or not np.isin(outs[1].ids, static).all()


def test_sample_stage_starts_late_and_refreshes_replacing_its_samples():
    pipe = Pipeline([Stage(EpochCopies(), schedule="epoch", every=2, start_epoch=1), Stage(Halve())], seed=0)
    pipe.check()
    assert pipe.changes_training_set
    versions, sizes, feats = [], [], []
    for e in range(6):
        out = pipe.run(e, 10, lambda ids, w: Pool(ids, weights=w))
        versions.append(pipe.training_set_version)
        sizes.append(out.ids.size)
        feats.append(None if not pipe.synthetic else float(pipe.synthetic[0][1].features[0, 0]))
    assert sizes == [5, 6, 6, 6, 6, 6], "no samples before epoch 1, then 10 + 2 rows halved"
    assert pipe.num_synthetic == 2 and len(pipe.synthetic) == 1, "a refresh replaces the stage's samples"
    assert feats == [None, 1.0, 1.0, 3.0, 3.0, 5.0], "made at epochs 1, 3, 5"
    assert versions[0] == 0 and versions[1] == versions[2] < versions[3] == versions[4] < versions[5]
    # synthetic ids still follow the base rows after a refresh
    assert pipe._cache[0]["ids"].tolist() == list(range(12))
    # a resume between refreshes restores the samples and reproduces what follows
    resumed = Pipeline([Stage(EpochCopies(), schedule="epoch", every=2, start_epoch=1), Stage(Halve())], seed=0)
    ref = Pipeline([Stage(EpochCopies(), schedule="epoch", every=2, start_epoch=1), Stage(Halve())], seed=0)
    for e in range(4):
        ref.run(e, 10, lambda ids, w: Pool(ids, weights=w))
    resumed.load_state_dict(ref.state_dict())
    a = resumed.run(4, 10, lambda ids, w: Pool(ids, weights=w))
    assert a.ran == ["halve"] and float(resumed.synthetic[0][1].features[0, 0]) == 3.0
    assert resumed.run(5, 10, lambda ids, w: Pool(ids, weights=w)).ran == ["epoch_copies", "halve"]


def test_a_static_pipeline_does_not_change_its_training_set():
    assert not Pipeline([Stage(Duplicator(), schedule="once"), Stage(RS2())], seed=0).changes_training_set
    assert Pipeline([Stage(Duplicator(), schedule="once", start_epoch=3), Stage(RS2())], seed=0).changes_training_set
