"""The collectives on 1, 2 and 4 gloo ranks (CPU processes): the same results at every world size,
the single-process references at world 1, and the faults each rank must report."""

import numpy as np
import pytest
from dist_launch import Ranks
from dist_ranks import BLOBS_N, BLOCK_ROWS, POOL_N, blobs, pool, queries, rank_part, tied_scores, weights, wide_partials

from selectkit import sampling
from selectkit.distributed import keyed_uniform

pytestmark = pytest.mark.ddp

EXACT = [
    "block_sum", "wide_block_sum", "gram", "top_ids", "top_scores", "top_rows", "low_ids", "uniform", "gumbel_ids", "replacement", "pi",
    "bernoulli", "knn_l2_d", "knn_l2_i", "knn_cosine_d", "knn_cosine_i", "knn_ip_d", "knn_ip_i", "self_d", "self_i",
    "init_centroids", "init_rounds", "init_candidates", "km_block_centroids", "km_block_inertia", "km_block_iter",
    "km_block_assign", "km_block_dist", "km_empty_centroids", "km_empty_assign",
]


@pytest.mark.parametrize("world", [2, 4])
def test_exact_collectives_return_world_one_results(battery, world):
    differ = [key for key in EXACT if not np.array_equal(battery[world][key], battery[1][key])]
    assert not differ, f"world {world} differs from world 1 in {differ}"


def test_world_one_results_match_single_process_references(battery):
    got = battery[1]
    x = pool().astype(np.float64)
    assert np.allclose(got["gram"], x.T @ x, rtol=1e-12, atol=1e-9)
    assert np.allclose(got["block_sum"], x.sum(axis=0), rtol=1e-12, atol=1e-10)
    partials = wide_partials(-(-POOL_N // BLOCK_ROWS))
    assert np.allclose(got["wide_block_sum"], partials.sum(axis=0), rtol=1e-12, atol=1e-9)
    s = tied_scores(pool())
    assert len(np.unique(s[got["top_ids"]])) < 40  # the top 40 holds ties
    assert np.array_equal(got["top_ids"], np.lexsort((np.arange(POOL_N), -s))[:40])
    assert np.array_equal(got["top_rows"], pool()[got["top_ids"]]) and np.array_equal(got["top_scores"], s[got["top_ids"]])
    assert np.array_equal(got["low_ids"], np.lexsort((np.arange(POOL_N), s))[:25])
    w = weights(pool())
    assert got["replacement"].size == 3000 and (w[got["replacement"]] > 0).all() and (np.diff(got["replacement"]) >= 0).all()
    assert (w[got["gumbel_ids"]] > 0).all() and len(set(got["gumbel_ids"].tolist())) == 30
    q = np.abs(pool()[:, 2]).astype(np.float64) ** 3
    ref_pi = sampling.inclusion_probabilities(q, 400.0)
    assert (ref_pi == 1).sum() > 0 and np.allclose(got["pi"], ref_pi, rtol=1e-12, atol=1e-15)
    assert abs(got["pi"].sum() - 400.0) < 1e-9
    assert np.array_equal(got["bernoulli"], np.flatnonzero(keyed_uniform((5,), np.arange(POOL_N)) < got["pi"]))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_all_sum_adds_in_rank_order(battery, world):
    for name, shape in (("small", (3,)), ("wide", (50, 100))):
        expected = rank_part(0, shape)
        for r in range(1, world):
            expected = expected + rank_part(r, shape)
        assert np.array_equal(battery[world][f"{name}_rank_sum"], expected), name
    parts = [rank_part(r, (50, 100)) for r in range(4)]
    assert not np.array_equal(((parts[0] + parts[1]) + parts[2]) + parts[3], ((parts[3] + parts[2]) + parts[1]) + parts[0])  # order shows


@pytest.mark.parametrize("world", [1, 2, 4])
@pytest.mark.parametrize("name", ["l2", "cosine", "ip", "self"])
def test_sharded_knn_equals_the_unsharded_search(battery, world, name):
    got = battery[world]
    distances, ids = (got["self_d"], got["self_i"]) if name == "self" else (got[f"knn_{name}_d"], got[f"knn_{name}_i"])
    ref_d, ref_i = (got["ref_self_d"], got["ref_self_i"]) if name == "self" else (got[f"ref_knn_{name}_d"], got[f"ref_knn_{name}_i"])
    assert distances.shape == ref_d.shape == (POOL_N if name == "self" else len(queries()), 5 if name == "self" else 7)
    assert np.array_equal(ids, ref_i) and np.array_equal(distances, ref_d)


@pytest.mark.parametrize("world", [2, 4])
def test_kmeans_with_rank_ordered_sums_agrees_to_rounding(battery, world):
    one, other = battery[1], battery[world]
    assert abs(other["km_rank_inertia"] - one["km_rank_inertia"]) <= 1e-6 * one["km_rank_inertia"]
    differ = np.flatnonzero(other["km_rank_assign"] != one["km_rank_assign"])
    assert differ.size <= BLOBS_N // 1000, f"{differ.size} assignments differ"
    if differ.size:  # each one within rounding of a tie between its two centres
        x = blobs()[differ].astype(np.float64)
        c = one["km_rank_centroids"].astype(np.float64)
        d_one = ((x - c[one["km_rank_assign"][differ]]) ** 2).sum(axis=1)
        d_other = ((x - c[other["km_rank_assign"][differ]]) ** 2).sum(axis=1)
        assert np.allclose(d_one, d_other, rtol=1e-5)


def test_kmeans_parallel_seeding_draws_candidates_in_few_rounds(battery):
    got = battery[1]
    assert got["init_rounds"] == 5 and 5 * 12 <= got["init_candidates"] <= 5 * 2 * 12 * 2
    assert got["km_block_iter"] >= 2 and np.isclose(got["km_block_inertia"], got["km_rank_inertia"], rtol=1e-6)


def test_bytes_sent_are_counted_per_rank(battery):
    assert battery[1]["bytes_sent"].tolist() == [0]
    assert battery[2]["bytes_sent"].size == 2 and (battery[2]["bytes_sent"] > 0).all()
    assert battery[4]["bytes_sent"].size == 4 and (battery[4]["bytes_sent"] > 0).all()


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_whose_config_or_pool_differ_fail_on_every_rank(battery, world):
    """Rank 1 passes another selector and a pool of another size and digest: every rank raises."""
    got = battery[world]
    if world == 1:
        assert got["config_error"].tolist() == got["size_error"].tolist() == got["digest_error"].tolist() == [""]
        return
    others = ",".join(str(r) for r in range(world) if r != 1)
    many = "s" if world > 2 else ""
    for config, size, digest in zip(got["config_error"], got["size_error"], got["digest_error"]):
        assert config.startswith(f"ConfigError: selector differs between ranks (rank{many} {others}: ") and "; rank 1: " in config
        assert size.startswith(f"ConfigError: data.path differs between ranks in size (rank{many} {others}: 1000; rank 1: 1001)")
        assert digest.startswith(f"ConfigError: data.path differs between ranks in content (rank{many} {others}: abc; rank 1: abd)")


@pytest.mark.parametrize("mode", ["hang", "die"])
def test_a_rank_that_hangs_or_dies_fails_the_others_naming_the_timeout(tmp_path, mode):
    ranks = Ranks("fault", 2, tmp_path, mode=mode, fault_timeout_s=3)
    try:
        ranks.procs[0].wait(timeout=120)
        err = ranks.error(0)
        assert ranks.procs[0].returncode == 1 and err is not None, ranks.procs[0].stdout.read()[-2000:]
        assert err.startswith("CollectiveError: distributed: ") and "distributed.timeout_s (3 s)" in err and "\n" not in err
        if mode == "hang":
            assert ranks.procs[1].poll() is None  # still asleep: rank 0 gave up without it
        else:
            assert ranks.procs[1].wait(timeout=30) == 3
    finally:
        ranks.kill()
