"""Pivotal sampling along a global order over shards, and the layout of a group of shard rows: inclusion
probabilities (statistical, fixed keys), fixed size, sibling leaves never both taken, the same sample
however the leaves are cut into ranks' runs, and group layouts without empty blocks."""

import numpy as np
import pytest

from selectkit import sampling
from selectkit.distributed import Comm, ShardLayout
from selectkit_plugins.sensitivity.clusters import member_layout
from selectkit_plugins.sensitivity.pivotal import _largest_nodes, _resolve_run, _resolve_top, sharded_pivotal


def _case(n=300, m=40.0, seed=0):
    rng = np.random.default_rng(seed)
    pi = sampling.inclusion_probabilities(rng.gamma(0.7, size=n), m)
    return pi, rng.integers(6, size=n), rng.random(n).astype(np.float32).astype(np.float64)


def test_inclusion_probabilities_and_the_size_are_kept():
    """Over 2,000 keys every item's frequency lies within 4.5 standard errors of its pi (300 items:
    about 1 in 500 runs of a fair design would fail one), and every sample holds sum(pi) distinct items."""
    pi, cluster, dist = _case()
    assert (pi >= 1 - 1e-9).sum() > 0 and ((pi > 1e-9) & (pi < 1 - 1e-9)).sum() > 100, "certain and open items both occur"
    keys = 2000
    freq = np.zeros(pi.size)
    for s in range(keys):
        pos, got_pi = sharded_pivotal(Comm.alone(), (s, 1), pi, cluster, dist, np.arange(pi.size))
        assert pos.size == 40 and np.unique(pos).size == 40 and np.all(np.diff(pos) > 0)
        assert np.array_equal(got_pi, pi[pos])
        freq[pos] += 1
    se = np.sqrt(np.maximum(pi * (1 - pi), 1e-12) / keys)
    assert np.all(np.abs(freq / keys - pi) <= 4.5 * se + 1e-12), float(np.max(np.abs(freq / keys - pi) / se))


def test_sibling_leaves_are_never_both_taken():
    """With pi = 1/2 everywhere, each pair of leaves under one node (neighbours in the order) holds
    exactly one item of the sample: the sample spreads along the order."""
    n = 256
    cluster = np.repeat(np.arange(8), n // 8)
    dist = np.tile(np.arange(n // 8, dtype=np.float64), 8)
    order = np.lexsort((np.arange(n), dist, cluster))
    for s in range(20):
        pos, _ = sharded_pivotal(Comm.alone(), (s,), np.full(n, 0.5), cluster, dist, np.arange(n))
        taken = np.zeros(n, dtype=bool)
        taken[pos] = True
        assert np.all(taken[order].reshape(-1, 2).sum(axis=1) == 1)


@pytest.mark.parametrize("cuts", [[0, 1, 300], [0, 97, 98, 250, 300], [0, 0, 150, 150, 300], [0, 75, 150, 225, 300]])
def test_the_same_sample_however_the_leaves_are_cut_into_runs(cuts):
    """The leaves cut into consecutive runs (as ranks hold them after the sort), each run's largest
    nodes resolved alone and the nodes above from their outputs: the same sample as one run."""
    pi, cluster, dist = _case(seed=3)
    open_ = (pi > 1e-9) & (pi < 1 - 1e-9)
    items = np.empty(int(open_.sum()), dtype=[("cluster", "i8"), ("dist", "f8"), ("pos", "i8"), ("pi", "f8")])
    items["cluster"], items["dist"], items["pos"], items["pi"] = cluster[open_], dist[open_], np.flatnonzero(open_), pi[open_]
    items = items[np.lexsort((items["pos"], items["dist"], items["cluster"]))]
    total = items.size
    cuts = [min(c, total) for c in cuts[:-1]] + [total]
    key = (5, 7)
    samples = []
    for bounds in ([0, total], cuts):
        won, nodes = [], []
        for a, b in zip(bounds[:-1], bounds[1:]):
            w, out = _resolve_run(key, items[a:b], a, _largest_nodes(a, b, total))
            won.append(items["pos"][a:b][w])
            nodes.append(out)
        top, _ = _resolve_top(key, np.concatenate(nodes), total)
        samples.append(np.sort(np.concatenate(won + [top])))
    assert np.array_equal(samples[0], samples[1])
    assert samples[0].size == round(pi[open_].sum())


def test_largest_nodes_tile_the_run():
    for a, b, total in [(0, 300, 300), (97, 250, 300), (1, 2, 300), (5, 5, 300), (0, 1, 1)]:
        nodes = _largest_nodes(a, b, total)
        covered = [i for start, size, _ in nodes for i in range(start, start + size)]
        assert covered == list(range(a, b))
        assert len(nodes) <= 2 * int(np.ceil(np.log2(total + 1))) + 1


def test_a_group_is_laid_out_in_the_pool_blocks_that_hold_members():
    layout = ShardLayout(1000, block_rows=100)
    mask = np.zeros(1000, dtype=bool)
    mask[[5, 7, 350, 351, 352, 999]] = True
    members = member_layout(Comm.alone(), layout, mask)
    assert members.n == 6 and members.n_blocks == 3, "blocks 0, 3 and 9 hold members; the other seven are left out"
    assert [members.block_bounds(b) for b in members.blocks] == [(0, 2), (2, 5), (5, 6)]
    assert (members.lo, members.hi, members.n_local) == (0, 6, 6)
    assert members.owner(np.arange(6)).tolist() == [0] * 6
