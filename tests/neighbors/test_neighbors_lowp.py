"""The certified bfloat16 pass of exact search: same results as float32, a bound that holds, a fallback that runs."""

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.neighbors import NeighborConfig, NeighborIndex, estimate_memory_bytes, knn
from selectkit.neighbors import lowp
from selectkit.neighbors.config import flat_precision
from selectkit.neighbors.flat import FlatEngine
from selectkit.neighbors.memory import Blocks

needs_bf16 = pytest.mark.skipif(not lowp.bf16_products_ok(), reason="torch's bfloat16 products here do not meet the certificate's error model")


def clustered(n, d, seed, queries=300):
    """Clustered points and queries near them (many close scores near each query's k-th best)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(4, n // 500), d)).astype(np.float32)
    base = centers[rng.integers(0, len(centers), n)] + 1.2 * rng.standard_normal((n, d)).astype(np.float32)
    q = base[rng.integers(0, n, queries)] + 0.9 * rng.standard_normal((queries, d)).astype(np.float32)
    return base, q


def brute(base, q, metric):
    """Float64 scores in the layer's convention (larger is better) and its tie-broken order."""
    b, x = base.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if metric == "l2":
        return -((x * x).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * x @ b.T)
    return x @ b.T


def assert_exact(idx, scores64, k, tol):
    """Every returned row is a true top-k point: its score is no worse than the true k-th best minus ``tol``
    (float32 resolution), and rows hold k distinct points."""
    kth = -np.sort(-scores64, axis=1)[:, k - 1]
    got = np.take_along_axis(scores64, idx, 1)
    assert (got >= kth[:, None] - tol).all()
    assert all(len(set(row)) == k for row in idx)


@needs_bf16
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_bf16_search_is_exact(metric):
    base, q = clustered(12_000, 96, seed=1)
    index = NeighborIndex(config=NeighborConfig(metric=metric, precision="bf16", block_size=64)).fit(base)
    assert index.precision_ == "bf16"
    dist, idx = index.search(q, 12)
    scores = brute(base, q, metric)
    tol = 1e-5 * max(1.0, np.abs(scores).max())
    assert_exact(idx, scores, 12, tol)
    fp32 = knn(base, q, k=12, config=NeighborConfig(metric=metric, precision="fp32", block_size=64))
    np.testing.assert_allclose(dist, fp32[0], rtol=1e-5, atol=tol)
    assert (idx == fp32[1]).mean() > 0.999  # a pair swapped only where two scores tie in float32


@needs_bf16
def test_near_ties_fail_the_certificate_and_are_searched_again_in_float32():
    rng = np.random.default_rng(2)
    d = 128
    point = rng.standard_normal(d).astype(np.float32)
    # 400 points closer to one another than bfloat16 can tell apart, and the queries among them
    crowd = point + 1e-4 * rng.standard_normal((400, d)).astype(np.float32)
    far = 3.0 * rng.standard_normal((3000, d)).astype(np.float32)
    base = np.concatenate([far, crowd])
    q = point + 1e-4 * rng.standard_normal((40, d)).astype(np.float32)
    index = NeighborIndex(config=NeighborConfig(metric="l2", precision="bf16")).fit(base)
    dist, idx = index.search(q, 5)
    assert index._engine.rechecked == 40  # no certificate can hold inside the crowd
    ref_d, ref_i = knn(base, q, k=5, config=NeighborConfig(metric="l2", precision="fp32"))
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-6)


@needs_bf16
def test_the_error_bound_holds_on_real_products():
    """|bfloat16 tile score - float64 score| stays within the bound the certificate uses, for every pair."""
    base, q = clustered(4_000, 200, seed=3, queries=256)
    low = lowp.Bf16Base(base, l2=False)
    q16 = torch.from_numpy(q).bfloat16()
    q_back = q16.float()
    approx = torch.mm(low.rows, q16.T).float().numpy().T  # [queries, base], bfloat16 output
    exact = q.astype(np.float64) @ base.astype(np.float64).T
    slack = low.query_slack(q_back.norm(dim=1).double().numpy(), (torch.from_numpy(q) - q_back).norm(dim=1).double().numpy())
    bound = slack[:, None] + lowp.SLACK * lowp.U_BF16 * np.abs(approx)
    err = np.abs(approx - exact)
    assert (err <= bound).all()
    assert err.max() > 0.2 * bound.max()  # the bound is not vacuous: errors reach a good part of it


def test_bf16_bits_round_to_nearest_even_like_torch():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((300, 37)) * 10.0 ** rng.integers(-6, 6, (300, 1))).astype(np.float32)
    x[0, :4] = [1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, -(1.0 + 2.0**-8), 0.0]  # exact ties round to even
    low = lowp.Bf16Base(x, l2=False)
    ours = low.rows.view(torch.int16).numpy()
    theirs = torch.from_numpy(x).bfloat16().view(torch.int16).numpy()
    np.testing.assert_array_equal(ours, theirs)
    back = low.rows.float().numpy().astype(np.float64)
    assert low.residual == pytest.approx(np.linalg.norm(x - back, axis=1).max(), rel=1e-9)
    assert low.norm == pytest.approx(np.linalg.norm(x.astype(np.float64), axis=1).max(), rel=1e-9)


def test_precision_settings():
    with pytest.raises(ConfigError, match="neighbors.precision"):
        NeighborConfig(precision="fp16")
    assert flat_precision(NeighborConfig(precision="fp32"), 512) == "fp32"
    assert flat_precision(NeighborConfig(precision="auto"), lowp.MIN_DIM - 1) == "fp32"
    auto = "bf16" if lowp.fast_bf16_cpu() and lowp.bf16_products_ok() else "fp32"
    assert flat_precision(NeighborConfig(precision="auto"), lowp.MIN_DIM) == auto
    assert flat_precision(NeighborConfig(precision="auto"), 512, lowp.MIN_BASE) == auto
    assert flat_precision(NeighborConfig(precision="auto"), 512, lowp.MIN_BASE - 1) == "fp32"  # e.g. k-means' centroids
    if lowp.bf16_products_ok():  # asked for explicitly, it runs on any base
        assert flat_precision(NeighborConfig(precision="bf16"), 512, 100) == "bf16"
    x = np.random.default_rng(5).standard_normal((500, 8)).astype(np.float32)
    assert NeighborIndex(config=NeighborConfig(precision="auto")).fit(x).precision_ == "fp32"  # d=8


def test_explicit_bf16_is_refused_where_the_products_do_not_meet_the_model(monkeypatch):
    monkeypatch.setattr(lowp, "_probe", [False])
    with pytest.raises(ConfigError, match="neighbors.precision=bf16"):
        NeighborIndex(config=NeighborConfig(precision="bf16")).fit(np.ones((10, 4), np.float32))
    assert flat_precision(NeighborConfig(precision="auto"), 512) == "fp32"


@needs_bf16
def test_memory_estimate_counts_the_bfloat16_copy():
    n, d = 200_000, 128
    fp32 = estimate_memory_bytes(n, 0, d, 10, NeighborConfig(precision="fp32"))
    bf16 = estimate_memory_bytes(n, 0, d, 10, NeighborConfig(precision="bf16"))
    assert bf16 - fp32 == n * d * 2


@needs_bf16
def test_a_base_no_wider_than_the_heap_runs_float32():
    base, q = clustered(40, 64, seed=6, queries=20)  # 40 rows < heap_width(12) = 40 + ... rows
    index = NeighborIndex(config=NeighborConfig(precision="bf16")).fit(base)
    dist, idx = index.search(q, 12)
    ref = knn(base, q, k=12, config=NeighborConfig(precision="fp32"))
    np.testing.assert_array_equal(idx, ref[1])


def test_query_locality_order_leaves_results_in_query_order():
    """Many small query blocks (reordered by locality) give the same neighbours as one block."""
    base, q = clustered(5_000, 16, seed=7, queries=700)
    engine = FlatEngine(base, l2=True)
    one = engine.search(q, 7, Blocks(query=700, base=2048, workers=1))
    many = engine.search(q, 7, Blocks(query=32, base=512, workers=2))
    np.testing.assert_array_equal(one[1], many[1])
    np.testing.assert_allclose(one[0], many[0], rtol=1e-5, atol=1e-4)


@needs_bf16
def test_the_bfloat16_copy_is_made_only_for_searches_of_other_queries():
    base, q = clustered(3_000, 64, seed=8, queries=50)
    index = NeighborIndex(config=NeighborConfig(precision="bf16")).fit(base)
    index.search(None, 5, exclude_self=True)  # a self-search runs float32 products
    assert index._engine._low is None
    index.search(q, 5)
    assert index._engine._low is not None and index._engine._low.rows.dtype == torch.bfloat16


@needs_bf16
def test_l2_rows_are_centred_so_data_far_from_the_origin_still_certifies():
    base, q = clustered(20_000, 64, seed=9, queries=600)
    base, q = base + 100.0, q + 100.0  # every product ~640,000: bfloat16's rounding of it alone is ~2,500
    index = NeighborIndex(config=NeighborConfig(metric="l2", precision="bf16", block_size=128)).fit(base)
    dist, idx = index.search(q, 8)
    assert index._engine.rechecked < 0.05 * q.shape[0] and index._engine.abandoned == 0
    # exact to well below the spacing of neighbours' distances (~1): float32 products of these rows are
    # not (their q . x - |x|^2 / 2 cancels to 0.06 resolution), the centred float64 rescoring is
    assert_exact(idx, brute(base, q, "l2"), 8, tol=1e-3)


@needs_bf16
def test_a_search_whose_first_blocks_fail_goes_on_in_float32_with_the_same_results():
    rng = np.random.default_rng(10)
    d = 64
    point = rng.standard_normal(d).astype(np.float32)
    base = np.concatenate([3.0 * rng.standard_normal((4000, d)), point + 1e-4 * rng.standard_normal((2000, d))]).astype(np.float32)
    q = point + 1e-4 * rng.standard_normal((400, d)).astype(np.float32)  # every query inside the crowd
    index = NeighborIndex(config=NeighborConfig(metric="l2", precision="bf16", block_size=50)).fit(base)
    dist, idx = index.search(q, 6)
    engine = index._engine
    workers = min(torch.get_num_threads(), 8)
    assert engine.abandoned == 1 and engine.rechecked == 50 * workers  # only the first blocks tried bfloat16
    ref = knn(base, q, k=6, config=NeighborConfig(metric="l2", precision="fp32", block_size=50))
    np.testing.assert_array_equal(idx, ref[1])
