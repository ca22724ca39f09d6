"""Sharding, the fixed summation tree and keyed randomness, in one process (no process group)."""

import numpy as np
import pytest

from selectkit.distributed import ShardedArray, ShardLayout, check_world, keyed_gumbel, keyed_uniform, subkey
from selectkit.distributed.shard import canonical_nodes, tree_depth, tree_value
from selectkit.errors import ConfigError


@pytest.mark.parametrize("n,block_rows,world", [(6100, 500, 4), (10, 3, 3), (1000, 1000, 2), (7, 1, 7), (5, 2, 5)])
def test_layout_cuts_contiguous_whole_blocks_earlier_ranks_taking_the_extra(n, block_rows, world):
    layouts = [ShardLayout(n, world, r, block_rows) for r in range(world)]
    counts = [len(lay.blocks) for lay in layouts]
    assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)
    assert sum(counts) == layouts[0].n_blocks == -(-n // block_rows)
    edges = [lay.rows_of(r) for r, lay in enumerate(layouts)]
    assert edges[0][0] == 0 and edges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(edges, edges[1:]))
    for lay in layouts:  # each shard starts on a block boundary (empty ones at the pool's end)
        assert lay.lo % block_rows == 0 or (lay.n_local == 0 and lay.lo == n)
        assert [b for b, _ in lay.local_blocks()] == list(lay.blocks)
    ids = np.arange(n)
    owner = layouts[0].owner(ids)
    assert all(((owner == r) == ((ids >= lo) & (ids < hi))).all() for r, (lo, hi) in enumerate(edges))


def test_ranks_without_blocks_get_empty_shards():
    layouts = [ShardLayout(3000, 4, r, 1000) for r in range(4)]
    assert [lay.n_local for lay in layouts] == [1000, 1000, 1000, 0]
    x = np.arange(3000.0)[:, None]
    empty = ShardedArray.from_global(x, layouts[3])
    assert empty.local.shape == (0, 1) and empty.ids.size == 0 and list(empty.blocks()) == []
    assert layouts[0].owner(np.array([0, 999, 1000, 2999])).tolist() == [0, 0, 1, 2]


def test_sharded_array_is_a_view_of_the_rank_rows():
    x = np.arange(50.0).reshape(25, 2)
    lay = ShardLayout(25, 3, 1, 4)
    s = ShardedArray.from_global(x, lay)
    assert np.shares_memory(s.local, x) and s.offset == lay.lo == 12 and s.n == 25
    assert np.array_equal(s.local, x[s.ids])
    assert np.array_equal(np.concatenate([rows for _, rows in s.blocks()]), s.local)
    with pytest.raises(ValueError, match="needs 8 local rows"):
        ShardedArray(x[:5], lay)


def test_world_larger_than_pool_names_world_and_pool_size():
    with pytest.raises(ConfigError, match=r"world size 5 .*nproc_per_node.* pool of 4 items"):
        check_world(4, 5)
    with pytest.raises(ConfigError, match="world size 3"):
        ShardLayout(2, 3, 0)
    with pytest.raises(ConfigError, match="distributed.block_rows"):
        ShardLayout(10, 1, 0, 0)


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 13, 64, 100])
def test_canonical_nodes_tile_each_rank_range_exactly(n_blocks):
    for world in (1, 2, 3, 4, 9):
        if world > n_blocks:
            continue
        lays = [ShardLayout(n_blocks, world, r, 1) for r in range(world)]
        covered = []
        for lay in lays:
            nodes = canonical_nodes(lay.blocks.start, lay.blocks.stop, n_blocks)
            assert len(nodes) <= 2 * max(1, len(lay.blocks)).bit_length() + 1
            for level, index in nodes:
                covered += [b for b in range(index << level, (index + 1) << level) if b < n_blocks]
        assert covered == list(range(n_blocks))
    assert canonical_nodes(0, n_blocks, n_blocks) == [(tree_depth(n_blocks), 0)]


def test_tree_sum_is_bit_identical_for_every_split_of_the_blocks():
    """The root combined from any world's per-rank nodes equals the root computed whole, bit for bit,
    while a plain left-to-right sum over ranks differs (so the test can tell them apart)."""
    rng = np.random.default_rng(0)
    n_blocks = 37
    partials = rng.standard_normal((n_blocks, 50)) * 10.0 ** rng.integers(-8, 8, (n_blocks, 1))
    leaf = lambda b: partials[b]  # noqa: E731
    whole = tree_value(tree_depth(n_blocks), 0, n_blocks, leaf=leaf)
    rank_order_differs = False
    for world in (2, 3, 4, 5, 8):
        known = {}
        per_rank = []
        for r in range(world):
            lay = ShardLayout(n_blocks, world, r, 1)
            nodes = canonical_nodes(lay.blocks.start, lay.blocks.stop, n_blocks)
            known.update({key: tree_value(*key, n_blocks, leaf=leaf) for key in nodes})
            per_rank.append(partials[lay.blocks.start : lay.blocks.stop].sum(axis=0))
        assert np.array_equal(tree_value(tree_depth(n_blocks), 0, n_blocks, known=known), whole)
        rank_order_differs |= not np.array_equal(np.sum(per_rank, axis=0), whole)
    assert rank_order_differs


def test_keyed_uniforms_depend_on_key_and_id_only():
    ids = np.arange(200_000, dtype=np.int64)
    u = keyed_uniform((3, 1), ids)
    assert u.dtype == np.float64 and (u > 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.005 and abs(np.histogram(u, 10, (0, 1))[0] / ids.size - 0.1).max() < 0.005
    perm = np.random.default_rng(0).permutation(ids)
    assert np.array_equal(keyed_uniform((3, 1), perm), u[perm])  # any order, any subset
    assert np.array_equal(keyed_uniform((3, 1), ids[5000:6000]), u[5000:6000])
    other = keyed_uniform(subkey((3, 1), 2), ids)
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.01 and abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    g = keyed_gumbel(7, ids)
    assert abs(g.mean() - np.euler_gamma) < 0.01 and abs(g.var() - np.pi**2 / 6) < 0.03
    with pytest.raises(ValueError, match="non-negative int"):
        keyed_uniform(-1, ids)
