"""The collectives at world size 1, in this process: no process group, the single-process results,
k-means|| against k-means++ seeding, and bad input refused before anything is sent."""

import numpy as np
import pytest
import torch.distributed as dist

from selectkit.distributed import (
    Comm, ShardedArray, global_topk, gumbel_topk, kmeans_parallel_init, sample_with_replacement, sharded_kmeans, sharded_knn,
    weighted_kmeanspp,
)
from selectkit.distributed.keyed import key_generator
from selectkit.errors import ConfigError
from selectkit.neighbors import NeighborConfig, knn


def sharded(x, block_rows=256):
    comm = Comm()
    return comm, ShardedArray.from_global(x, comm.layout(x.shape[0], block_rows))


def test_world_one_needs_no_process_group_and_returns_its_input():
    assert not dist.is_initialized()
    comm = Comm(timeout_s=5)
    assert (comm.world, comm.rank, comm.group) == (1, 0, None)
    x = np.arange(6.0).reshape(2, 3)
    assert np.array_equal(comm.all_sum(x), x) and comm.all_sum(x).dtype == np.float64
    assert comm.all_sum(np.int32(4)).dtype == np.int64 and int(comm.all_sum(4)) == 4
    assert [a.tolist() for a in comm.all_gather(x)] == [x.tolist()] and comm.all_gather_objects("d") == ["d"]
    layout = comm.layout(1000, 300)
    parts = np.random.default_rng(0).standard_normal((4, 3))
    assert np.array_equal(comm.block_sum(parts, layout), (parts[0] + parts[1]) + (parts[2] + parts[3]))
    assert comm.bytes_sent == 0 and not dist.is_initialized()
    with pytest.raises(ConfigError, match="distributed.timeout_s"):
        Comm(timeout_s=0)


def test_global_topk_ties_go_to_the_lowest_id_and_payload_follows():
    comm = Comm()
    rng = np.random.default_rng(1)
    ids = rng.permutation(5000) * 3  # ids are global, in any order
    scores = rng.integers(0, 20, 5000).astype(np.float64)
    for largest in (True, False):
        top = global_topk(comm, scores, ids, 60, largest=largest, payload={"pos": np.arange(5000)})
        key = -scores if largest else scores
        order = np.lexsort((ids, key))[:60]
        assert np.array_equal(top.ids, ids[order]) and np.array_equal(top.scores, scores[order])
        assert np.array_equal(top.payload["pos"], order)
    assert global_topk(comm, scores[:5], ids[:5], 10).ids.size == 5
    with pytest.raises(ValueError, match="NaN"):
        global_topk(comm, np.array([1.0, np.nan]), np.array([0, 1]), 1)


def test_gumbel_topk_draws_in_proportion_to_the_weights():
    comm = Comm()
    w = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    counts = np.zeros(5)
    for trial in range(4000):
        counts[gumbel_topk(comm, (9, trial), np.log(np.where(w > 0, w, 1e-300)), np.arange(5), 1).ids] += 1
    assert counts[4] == 0
    assert np.abs(counts[:4] / 4000 - w[:4] / w.sum()).max() < 0.025
    picked = gumbel_topk(comm, 1, np.array([0.0, -np.inf, 0.0]), np.arange(3), 3).ids
    assert sorted(picked.tolist()) == [0, 2]  # an item of weight 0 is never drawn


def test_sample_with_replacement_draws_exactly_m_in_proportion():
    rng = np.random.default_rng(2)
    w = rng.random(2000)
    w[::3] = 0.0
    w[256:512] = 0.0  # one whole block without mass
    comm, p = sharded(w)
    draws = sample_with_replacement(comm, (1,), p, 200_000)
    assert draws.size == 200_000 and (np.diff(draws) >= 0).all() and (w[draws] > 0).all()
    freq = np.bincount(draws, minlength=w.size) / draws.size
    assert np.abs(freq - w / w.sum()).max() < 6 * np.sqrt((w / w.sum()).max() / draws.size)
    assert np.array_equal(draws, sample_with_replacement(comm, (1,), p, 200_000))
    assert not np.array_equal(draws, sample_with_replacement(comm, (2,), p, 200_000))
    with pytest.raises(ValueError, match="finite and non-negative"):
        sample_with_replacement(comm, (1,), ShardedArray(-w, p.layout), 5)


def test_sharded_knn_far_from_the_origin_keeps_the_unsharded_neighbours():
    """Rows at offset 1000: the unsharded layer centres them, the shards score raw rows; the neighbours
    are the same and the distances equal to float32 rounding of the distance."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1500, 6)) + 1000.0).astype(np.float32)
    comm, base = sharded(x)
    d, i = sharded_knn(comm, x[:200] + 0.1, base, 5)
    ref_d, ref_i = knn(x, x[:200] + 0.1, k=5)
    assert np.array_equal(i, ref_i) and np.allclose(d, ref_d, rtol=1e-4, atol=1e-3)


def test_kmeans_parallel_seeding_ends_as_low_as_kmeanspp_in_far_fewer_rounds():
    """Blobs, 25 clusters: Lloyd from k-means|| (5 rounds) ends at an inertia no higher than Lloyd from
    k-means++ (25 sequential rounds), averaged over seeds."""
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((25, 10)) * 6
    x = (centres[rng.integers(0, 25, 20_000)] + rng.standard_normal((20_000, 10))).astype(np.float32)
    comm, sx = sharded(x, 2048)
    parallel, plusplus = [], []
    for seed in range(3):
        r = sharded_kmeans(comm, sx, 25, seed=seed, n_iter=50)
        assert r.init_rounds == 5 and r.candidates > 25
        parallel.append(r.inertia)
        start = x[weighted_kmeanspp(x, np.ones(x.shape[0]), 25, key_generator(seed))]
        plusplus.append(sharded_kmeans(comm, sx, 25, init=start, n_iter=50).inertia)
    assert np.mean(parallel) <= np.mean(plusplus) * 1.01


def test_an_empty_cluster_restarts_at_the_farthest_point():
    """Centre 1 starts on centre 0 and wins no point: after one update it sits on the point farthest
    from its centre, and that point has left its old cluster's mean."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3000, 5)).astype(np.float32)
    comm, sx = sharded(x)
    start = x[:4].copy()
    start[1] = start[0]
    r = sharded_kmeans(comm, sx, 4, init=start, n_iter=1)
    d = ((x[:, None, :].astype(np.float64) - start[None].astype(np.float64)) ** 2).sum(axis=2)
    labels = d.argmin(axis=1)
    assert not (labels == 1).any()
    far = int(np.lexsort((np.arange(3000), -d[np.arange(3000), labels]))[0])
    assert np.array_equal(r.centroids[1], x[far])
    rest = (labels == labels[far]) & (np.arange(3000) != far)
    assert np.allclose(r.centroids[labels[far]], x[rest].astype(np.float64).mean(axis=0), atol=1e-6)


def test_kmeans_refuses_bad_settings():
    comm, sx = sharded(np.random.default_rng(5).standard_normal((300, 4)).astype(np.float32))
    with pytest.raises(ConfigError, match="neighbors.metric='ip'"):
        sharded_kmeans(comm, sx, 3, config=NeighborConfig(metric="ip"))
    with pytest.raises(ValueError, match="k=301"):
        sharded_kmeans(comm, sx, 301)
    with pytest.raises(ValueError, match="reduce="):
        sharded_kmeans(comm, sx, 3, reduce="tree")
    with pytest.raises(ValueError, match=r"init has shape \(2, 4\)"):
        sharded_kmeans(comm, sx, 3, init=np.zeros((2, 4)))
    assert kmeans_parallel_init(comm, sx, 3, rounds=0).candidates == 3  # topped up to k from the farthest points
