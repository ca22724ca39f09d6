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
    """(ids, weights, live) of the sampler's items: ints, or (id, weight, live) triples."""
    out = list(iter(sampler))
    if out and isinstance(out[0], tuple):
        return np.array([i for i, _, _ in out]), np.array([w for _, w, _ in out]), np.array([l for _, _, l in out], dtype=bool)
    return np.array(out), np.ones(len(out)), np.ones(len(out), dtype=bool)


def test_is_distributed_sampler_so_lightning_keeps_it():
    assert isinstance(SelectionSampler(_controller(), num_replicas=1, rank=0), DistributedSampler)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_union_of_rank_shards_is_the_epoch_subset(world):
    for epoch in range(3):
        shards, weights = [], []
        for rank in range(world):
            s = SelectionSampler(_controller(), num_replicas=world, rank=rank)
            s.set_epoch(epoch)
            ids, w, alive = _items(s)
            assert len(ids) == len(s) == math.ceil(101 / world)
            assert (w == 1).all(), "padding is marked by the mask, never by a weight"
            shards.append(ids[alive])
            weights.append(alive)
        subset, _ = _controller().selection(epoch)
        live = np.concatenate(shards)
        assert np.array_equal(np.sort(live), np.sort(subset)), "live items across ranks are exactly the subset"
        assert np.unique(live).size == live.size, "shards are disjoint"
        pads = sum(int((~a).sum()) for a in weights)
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


def test_selections_may_change_size_between_epochs():
    class Growing:
        seed = 0
        random_order = False

        def selection(self, epoch):
            return np.arange(10 + 3 * epoch, dtype=np.int64), None

    for world in (1, 2):
        samplers = [SelectionSampler(Growing(), num_replicas=world, rank=r) for r in range(world)]
        for epoch in range(3):
            for s in samplers:
                s.set_epoch(epoch)
            lengths = {len(s) for s in samplers}
            assert lengths == {math.ceil((10 + 3 * epoch) / world)}, "every rank runs the same number of items"
            live = np.concatenate([_items(s)[0][_items(s)[2]] for s in samplers])
            assert np.array_equal(np.sort(live), np.arange(10 + 3 * epoch))


def test_weighted_items_carry_weight_and_live_flag():
    class Weighted:
        seed = 0
        random_order = True

        def selection(self, epoch):
            return np.arange(5, dtype=np.int64), np.array([0.5, 1.0, 2.0, 1.5, 1.0], np.float32)

    s = SelectionSampler(Weighted(), num_replicas=2, rank=1)
    s.set_epoch(0)
    ids, w, alive = _items(s)
    assert ids.tolist() == [1, 3, 0] and w.tolist() == [1.0, 1.5, 0.5] and alive.tolist() == [True, True, False]


def test_selection_time_is_accounted():
    c = _controller(n=200_000)
    c.selection(0)
    assert c.select_s > 0
