"""SelectionSampler: sizes, shards, padding, determinism, no re-wrap by Lightning."""

import math

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from selectkit.control import SelectionController
from selectkit.pipeline import Pipeline, Stage
from selectkit.sampler import SelectionSampler
from selectkit_plugins.rs2 import RS2


def _controller(n=1003, fraction=0.1, seed=0, weights=False):
    pipe = Pipeline([Stage(RS2(fraction=fraction))], seed=seed)
    labels = np.arange(n) % 10
    return SelectionController(pipe, labels, lambda ids: np.zeros((len(ids), 2), np.float32))


def _items(sampler):
    out = list(iter(sampler))
    if out and isinstance(out[0], tuple):
        return np.array([i for i, _ in out]), np.array([w for _, w in out])
    return np.array(out), np.ones(len(out))


def test_is_distributed_sampler_so_lightning_keeps_it():
    assert isinstance(SelectionSampler(_controller(), num_replicas=1, rank=0), DistributedSampler)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_union_of_rank_shards_is_the_epoch_subset(world):
    for epoch in range(3):
        shards, weights = [], []
        for rank in range(world):
            s = SelectionSampler(_controller(), num_replicas=world, rank=rank)
            s.set_epoch(epoch)
            ids, w = _items(s)
            assert len(ids) == len(s) == math.ceil(101 / world)
            shards.append(ids[w > 0])
            weights.append(w)
        subset, _ = _controller().selection(epoch)
        live = np.concatenate(shards)
        assert np.array_equal(np.sort(live), np.sort(subset)), "live items across ranks are exactly the subset"
        assert np.unique(live).size == live.size, "shards are disjoint"
        pads = sum(int((w == 0).sum()) for w in weights)
        assert pads == len(s) * world - 101


def test_each_rank_computes_same_subset_independently():
    a = _controller(seed=5).selection(4)[0]
    b = _controller(seed=5).selection(4)[0]
    assert np.array_equal(a, b)


def test_shuffle_order_from_seed_and_epoch():
    s1 = SelectionSampler(_controller(seed=1), num_replicas=1, rank=0)
    s2 = SelectionSampler(_controller(seed=1), num_replicas=1, rank=0)
    s1.set_epoch(2)
    s2.set_epoch(2)
    assert np.array_equal(_items(s1)[0], _items(s2)[0])
    s2.set_epoch(3)
    assert not np.array_equal(_items(s1)[0], _items(s2)[0])


def test_size_change_is_refused():
    class Growing:
        seed = 0

        def expected_size(self):
            return 10

        def selection(self, epoch):
            return np.arange(10 + epoch, dtype=np.int64), None

    s = SelectionSampler(Growing(), num_replicas=1, rank=0)
    s.set_epoch(1)
    with pytest.raises(RuntimeError, match="one size per run"):
        list(iter(s))


def test_selection_time_is_accounted():
    c = _controller(n=200_000)
    c.selection(0)
    assert c.select_s > 0
