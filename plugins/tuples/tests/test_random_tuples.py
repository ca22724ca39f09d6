"""Random tuples: the shared selector contract, tuple invariants by label, fractions, one-member classes,
determinism from the seed, and bad settings."""

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.selection import Tuples
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector
from selectkit_plugins.tuples import RandomTuples


def test_contract():
    check_selector(
        lambda **kw: RandomTuples(**{"fraction": 0.5, "negatives": 2, **kw}),
        bad_params={"fraction": [0, 1.5, "x", None], "negatives": [-1, 1.5, "two", True]},
        stochastic=True,
    )


def _labels(n=300, seed=0):
    return np.random.default_rng(seed).integers(0, 5, size=n)


@pytest.mark.parametrize("negatives", [0, 1, 4])
def test_tuples_follow_labels(negatives):
    labels = _labels()
    out = RandomTuples(negatives=negatives).select(Pool(labels.shape[0], labels=labels), SelectContext(seed=3, epoch=1))
    assert isinstance(out, Tuples) and out.tuple_size == 2 + negatives
    out.check(labels.shape[0])
    assert np.array_equal(np.sort(out.anchors), np.arange(labels.shape[0])), "fraction 1: every item anchors once"
    assert np.all(out.anchors != out.positives)
    assert np.all(labels[out.positives] == labels[out.anchors])
    assert out.negatives.shape == (labels.shape[0], negatives)
    assert np.all(labels[out.negatives] != labels[out.anchors][:, None])


def test_draws_cover_the_choices():
    labels = np.array([0] * 4 + [1] * 3 + [2] * 3)
    pool = Pool(labels.shape[0], labels=labels)
    pairs, negs = set(), set()
    for epoch in range(60):
        out = RandomTuples(negatives=2).select(pool, SelectContext(seed=0, epoch=epoch))
        pairs |= set(zip(out.anchors.tolist(), out.positives.tolist()))
        negs |= {(a, n) for a, row in zip(out.anchors.tolist(), out.negatives.tolist()) for n in row}
    same = {(a, p) for a in range(10) for p in range(10) if a != p and labels[a] == labels[p]}
    other = {(a, n) for a in range(10) for n in range(10) if labels[a] != labels[n]}
    assert pairs == same, "every same-label partner is drawn as a positive over the epochs"
    assert negs == other, "every other-label item is drawn as a negative over the epochs"


def test_fraction_and_singletons_counted():
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 3, 3, 4] * 1)
    pool = Pool(labels.shape[0], labels=labels)
    out = RandomTuples(negatives=1).select(pool, SelectContext(seed=0))
    assert out.meta["skipped_singleton"] == 2 and len(out) == 8
    assert not set(out.anchors.tolist()) & {3, 9}
    big = _labels(1000)
    half = RandomTuples(fraction=0.25).select(Pool(1000, labels=big), SelectContext(seed=0))
    assert len(half) == 250 and np.unique(half.anchors).size == 250
    assert half.meta["anchors_drawn"] == 250


def test_epochs_and_seeds_differ_same_inputs_repeat():
    labels = _labels()
    pool = Pool(labels.shape[0], labels=labels)
    a = RandomTuples().select(pool, SelectContext(seed=0, epoch=0))
    b = RandomTuples().select(pool, SelectContext(seed=0, epoch=1))
    again = RandomTuples().select(pool, SelectContext(seed=0, epoch=0))
    assert np.array_equal(a.items(), again.items())
    assert not np.array_equal(a.items(), b.items()), "tuples are drawn afresh every epoch"


def test_subset_pool_positions():
    labels = _labels(50)
    ids = np.arange(100, 150)
    out = RandomTuples(negatives=2).select(Pool(ids, labels=labels), SelectContext(seed=1))
    out.check(50)
    assert out.items().max() < 50, "tuples address pool positions, the pipeline maps them to ids"


def test_negatives_need_two_labels():
    pool = Pool(6, labels=np.zeros(6, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"selector\.negatives"):
        RandomTuples(negatives=1).select(pool, SelectContext(seed=0))
    assert len(RandomTuples(negatives=0).select(pool, SelectContext(seed=0))) == 6


def test_in_a_pipeline_tuples_are_global_ids():
    from selectkit.pipeline import Pipeline, Stage

    labels = _labels(80)
    pipeline = Pipeline([Stage(RandomTuples(negatives=1), name="t")], seed=0)
    out = pipeline.run(0, 80, lambda ids, w: Pool(ids, labels=labels[ids] if not isinstance(ids, int) else labels), rows=80)
    assert out.kind == "tuples" and out.tuples.shape == (80, 3)
    assert np.all(labels[out.tuples[:, 0]] == labels[out.tuples[:, 1]])
