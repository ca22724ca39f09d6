"""The pool's two ways to read a provider (whole, by shard) and the declarations that govern them."""

import numpy as np
import pytest

from selectkit.errors import SelectionError
from selectkit.selection import Selection
from selectkit.selector import Pool, SelectContext, Selector


def _pool(n=10, calls=None):
    feats = np.arange(n * 3, dtype=np.float32).reshape(n, 3)

    def features(ids):
        if calls is not None:
            calls.append(np.asarray(ids).copy())
        return feats[np.asarray(ids) - 100]

    return Pool(np.arange(100, 100 + n), providers={"features": features, "labels": lambda ids: ids % 2}), feats


def test_alone_local_is_the_whole_array_and_computed_once():
    calls = []
    pool, feats = _pool(calls=calls)
    shard = pool.local("features")
    assert shard.offset == 0 and shard.n == 10 and np.array_equal(shard.local, feats)
    assert np.array_equal(pool.get("features"), feats) and len(calls) == 1
    assert pool.layout.n_local == 10 and np.array_equal(pool.local_ids, np.arange(100, 110))


def test_get_at_reads_only_the_positions_asked_for():
    calls = []
    pool, feats = _pool(calls=calls)
    assert np.array_equal(pool.get_at("features", np.array([4, 1])), feats[[4, 1]])
    assert calls[0].tolist() == [104, 101]


class _Sharded(Selector):
    name = "sharded_probe"
    sharded = True

    def __init__(self, *, whole: str = "features") -> None:
        self.whole = whole

    def _select(self, pool, ctx):
        pool.get(self.whole)
        return Selection(np.arange(2, dtype=np.int64))


class _ShardedGathering(_Sharded):
    gathers = frozenset({"features"})


def test_a_sharded_selector_may_not_read_an_undeclared_provider_whole():
    pool, _ = _pool()
    with pytest.raises(SelectionError, match=r"sharded_probe\) declares sharded = True but reads 'features' whole"):
        _Sharded().select(pool, SelectContext(seed=0))
    assert pool.reader is None, "the reader is unbound after the selection, even when it failed"
    assert len(_Sharded(whole="labels").select(_pool()[0], SelectContext(seed=0))) == 2, "labels are held whole anyway"
    assert len(_ShardedGathering().select(_pool()[0], SelectContext(seed=0))) == 2, "declared in gathers"


def test_relations_are_read_whole_only():
    pool = Pool(4, providers={"pairs": lambda ids: np.array([[0, 1]], dtype=np.int64)})
    assert pool.get("pairs").tolist() == [[0, 1]]
    with pytest.raises(SelectionError, match="relates items"):
        pool.local("pairs")
