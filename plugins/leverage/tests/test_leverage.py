"""Leverage sampling: the selector contract, scores against a float64 reference, the sketch's stated
tolerance, pivotal sampling's inclusion probabilities and fixed size, weights, bad input, blocks."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from selectkit.errors import ConfigError
from selectkit.schema import check_selector_config
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.leverage import LeverageSampling
from selectkit import sampling
from selectkit_plugins.leverage import scores
from selectkit_plugins.leverage.scores import Blocks, exact_scores, sketched_scores

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector" / "leverage.yaml"


def _reference(a: np.ndarray, lam: float = 0.0) -> np.ndarray:
    """Leverage (ridge) scores in float64 through numpy's SVD, on the numerical rank."""
    a = np.asarray(a, dtype=np.float64)
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    if lam:
        return (u**2 * (s**2 / (s**2 + lam))).sum(1)
    keep = s > 1e-6 * s[0]
    return (u[:, keep] ** 2).sum(1)


@pytest.mark.parametrize("scheme,score", [("pivotal", "leverage"), ("bernoulli", "leverage"), ("replacement", "leverage"), ("pivotal", "ridge"), ("bernoulli", "root")])
def test_contract(scheme, score):
    check_selector(
        lambda **kw: LeverageSampling(**{"budget": 24, "scheme": scheme, "score": score, **kw}),
        bad_params={
            "budget": [0, -1, 0.0, 1.5, "x", None, True, 10_000],
            "scheme": ["pivot", None],
            "score": ["lev"],
            "method": ["qr"],
            "source": ["pixels"],
            "ridge": [0.0, -1.0],
            "p": [0.5, 3.0],
            "sketch_size": [0, 2.5],
            "projection": [0],
            "sketch_tol": [0.0, -0.1, "x"],
            "uniform_mix": [1.0, -0.1],
            "tree_dims": [0],
            "block_rows": [0],
        },
        stochastic=True,
    )


def test_contract_sketched_and_from_embeddings():
    check_selector(lambda **kw: LeverageSampling(**{"budget": 0.1, "method": "sketch", "sketch_size": 64, **kw}), bad_params={"sketch_size": [4, 100_000]}, stochastic=True)
    check_selector(lambda **kw: LeverageSampling(**{"budget": 0.1, "source": "embeddings", **kw}), stochastic=True)


def test_yaml_is_typed_by_its_schema():
    sel = check_selector_config("leverage", CONF)
    assert isinstance(sel, LeverageSampling) and sel.budget == 0.1 and sel.scheme == "pivotal"


# ------------------------------------------------------------------ scores
def _matrix(n, d, kappa, seed, rotate=True):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d)) * np.logspace(0, np.log10(kappa), d)
    if rotate:
        a = a @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    a[: n // 50] *= 10  # a few high-leverage rows
    return a.astype(np.float32)


@pytest.mark.parametrize("kappa,method", [(2.0, "cholesky_qr32"), (100.0, "cholesky_qr32"), (600.0, "cholesky_qr2_64"), (1e5, "cholesky_qr2_64")])
def test_exact_scores_match_float64_and_sum_to_rank(kappa, method):
    a = _matrix(3000, 12, kappa, seed=1)
    s = exact_scores(Blocks.of(a, block_rows=700))
    ref = _reference(a)
    assert s.method == method, f"kappa {kappa} should take the {method} path, took {s.method}"
    assert np.max(np.abs(s.values - ref)) <= 1e-5 * ref.max()
    assert s.rank == 12 and abs(s.values.sum() - 12) < 1e-4


def test_one_pass_when_the_estimated_error_allows_it():
    # one scoring pass after the float64 Gram matrix while its estimate stays within 1e-5 per row;
    # above, Cholesky-QR2 in float64 (a float32 scoring pass erred 1.07e-5 at kappa 279 here, whatever
    # the whitening); every score within 1e-5 per row of float64 on every path
    cases = [(50_000, 10.0, "cholesky_qr32", 9_000), (3_000, 10.0, "cholesky_qr32", 9_000), (50_000, 200.0, "cholesky_qr32", 9_000),
             (50_000, 300.0, "cholesky_qr2_64", None), (50_000, 500.0, "cholesky_qr2_64", 9_000)]
    for n, kappa, method, block_rows in cases:
        a = _matrix(n, 12, kappa, seed=1)
        s = exact_scores(Blocks.of(a, block_rows=block_rows))
        ref = _reference(a)
        rel = np.max(np.abs(s.values - ref) / ref)
        est = s.meta["one_pass_error_estimate"]
        assert s.method == method, (n, kappa, s.method, s.meta)
        assert rel <= 1e-5, (n, kappa, rel)
        if method == "cholesky_qr32":
            assert rel <= est <= scores.ONE_PASS_TOL, (rel, est)
        else:
            assert est > scores.ONE_PASS_TOL
        assert s.meta["passes"] == (2 if method == "cholesky_qr32" else 3)


def test_gram_is_the_float64_product_and_its_rounding_bound_holds():
    a = _matrix(40_000, 10, 200.0, seed=6)
    g, colsum = scores.gram(Blocks.of(a, block_rows=5_000))
    a64 = a.astype(np.float64)
    g64 = a64.T @ a64
    assert np.allclose(colsum, a64.sum(0), rtol=1e-12)
    scale = 1.0 / np.sqrt(np.diag(g64))
    err = np.abs((g - g64) * scale[:, None] * scale[None, :]).max()  # Jacobi-scaled, as the bound is stated
    rows = min(5_000, scores._sub_rows(10))  # blocks of 5,000 rows: each is one sub-block
    assert err <= (rows + -(-a.shape[0] // rows)) * 2.0**-53, err


def test_scores_do_not_depend_on_the_thread_count():
    a = _matrix(20_000, 8, 50.0, seed=7)
    before = torch.get_num_threads()
    try:
        got = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            got.append(exact_scores(Blocks.of(a, block_rows=3_000)).values)
            assert torch.get_num_threads() == threads, "the thread count is restored"
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(got[0], x) for x in got[1:])


_NATIVE_THREADS = """
import os, threading
import numpy as np
import torch
from selectkit.neighbors.lloyd import single_threaded_blas
from selectkit_plugins.leverage.scores import Blocks, exact_scores
torch.set_num_threads(2)
a = torch.randn(512, 256)
torch.mm(a, a.T)  # torch's own OpenMP team
with single_threaded_blas():  # scipy's BLAS loaded
    pass
native = lambda: len(os.listdir("/proc/self/task")) - threading.active_count()
before = native()
exact_scores(Blocks.of(np.random.default_rng(0).standard_normal((50_000, 64)).astype(np.float32)))
print(before, native(), torch.get_num_threads())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_scoring_workers_leave_no_threads_of_their_own_behind():
    # a torch product on a worker thread starts an OpenMP team for that thread; those threads stay,
    # oversubscribe the cores, and change how every later OpenMP wait in the process spins
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _NATIVE_THREADS], capture_output=True, text=True, check=True).stdout.split()
    before, after, threads = (int(v) for v in out)
    assert after == before, f"{after - before} native threads started by the scoring workers"
    assert threads == 2


def test_rank_deficient_features_drop_to_the_numerical_rank():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2000, 9)).astype(np.float32)
    a[:, 3] = a[:, 1] + a[:, 2]  # dependent column
    a[:, 6] = 0.0  # constant zero column
    a[:, 7] = 2.5  # constant column (one direction with a[:, 8] = 2 * a[:, 7] below)
    a[:, 8] = 5.0
    s = exact_scores(Blocks.of(a, block_rows=333))
    assert s.rank == 6 and s.method == "cholesky_qr2_64"
    assert abs(s.values.sum() - 6) < 1e-6
    assert np.max(np.abs(s.values - _reference(a))) < 1e-6


def test_constant_features_give_uniform_scores_and_zero_features_fall_back_to_uniform():
    a = np.full((500, 4), 3.0, dtype=np.float32)
    s = exact_scores(Blocks.of(a))
    assert s.rank == 1 and np.allclose(s.values, 1.0 / 500, rtol=1e-6)
    pool = Pool(500, features=np.zeros((500, 4), np.float32))
    out = LeverageSampling(budget=50, scheme="bernoulli").select(pool, SelectContext(seed=0))
    assert out.meta["fallback"] == "uniform (rank 0)"
    assert np.allclose(out.weights, 1.0), "uniform inclusion probabilities give unit weights"


def test_ridge_scores_match_float64():
    a = _matrix(2000, 10, 30.0, seed=3)
    lam = 50.0
    s = exact_scores(Blocks.of(a, block_rows=512), ridge=lam)
    ref = _reference(a, lam)
    assert np.max(np.abs(s.values - ref)) <= 1e-5 * ref.max()
    assert s.values.sum() < 10 and abs(s.values.sum() - ref.sum()) < 1e-4, "ridge scores sum to the effective dimension"


def test_ridge_parameter_is_relative_to_the_mean_eigenvalue():
    a = _matrix(1500, 6, 10.0, seed=4)
    sel = LeverageSampling(score="ridge", ridge=0.5, budget=100, method="exact")
    blocks = Blocks.of(a)
    got = sel._scores(blocks, SelectContext(seed=0)).values
    a64 = a.astype(np.float64)
    lam = 0.5 * np.trace(a64.T @ a64) / 6
    assert np.max(np.abs(got - _reference(a, lam))) < 1e-5 * got.max()


def test_sketched_scores_within_their_stated_tolerance():
    a = _matrix(20000, 16, 20.0, seed=5)
    ref = _reference(a)
    for projection in (None, 8):
        s = sketched_scores(Blocks.of(a, block_rows=4096), sketch_size=2048, projection=projection, rng=np.random.default_rng(0))
        tol = s.meta["rel_error_estimate"]
        rel = np.abs(s.values / ref - 1.0)
        assert 0 < tol < 3.0, tol
        assert np.mean(rel <= tol) >= 0.99, f"projection {projection}: {np.mean(rel <= tol):.3f} of rows within {tol:.3f}"
        # the estimate is not vacuous: it is at most a few times the median error
        assert tol <= 20 * np.median(rel) + 0.05


def test_auto_runs_exact_when_the_sketch_bound_exceeds_its_tolerance():
    # 4,096 x 256 and a sketch of 1,024 rows: it states an error far above 5%, so auto keeps exact
    a = _matrix(4096, 256, 5.0, seed=3)
    pool = Pool(4096, features=a)
    lev = lambda **kw: LeverageSampling(budget=200, sketch_size=1024, **kw).select(pool, SelectContext(seed=0))
    exact = lev(method="exact")
    stated = lev(method="sketch").meta["rel_error_estimate"]
    floor = scores.sketch_error_floor(256, 1024)
    assert 0.05 < floor < stated, "the floor is below what the sketch states, and above the default tolerance"
    # default tolerance: even the floor is above it, so no sketch pass runs
    auto = lev()
    assert auto.meta["method"].startswith("cholesky_qr") and auto.meta["auto"].startswith("exact")
    assert auto.meta["sketch_error_floor"] > auto.meta["sketch_tol"] == 0.05 and "sketch_error_estimate" not in auto.meta
    assert np.array_equal(auto.indices, exact.indices) and np.array_equal(auto.weights, exact.weights)
    # a tolerance between the floor and the estimate: the sketch runs, states too much, exact runs
    between = lev(sketch_tol=(floor + stated) / 2)
    assert between.meta["method"].startswith("cholesky_qr") and between.meta["sketch_error_estimate"] == stated > between.meta["sketch_tol"]
    assert np.array_equal(between.indices, exact.indices)
    loose = lev(sketch_tol=100.0)
    assert loose.meta["method"] == "sketch" and loose.meta["auto"].startswith("sketch")
    assert loose.meta["rel_error_estimate"] == loose.meta["sketch_error_estimate"] == stated
    narrow = LeverageSampling(budget=20).select(make_pool(), SelectContext(seed=0))
    assert narrow.meta["method"].startswith("cholesky_qr") and "fewer than 256 columns" in narrow.meta["auto"]


def test_the_sketch_error_floor_is_below_what_sketches_state():
    rng = np.random.default_rng(0)
    for n, d, k in ((20_000, 16, 256), (20_000, 32, 2048), (4096, 256, 1024)):
        a = rng.standard_normal((n, d)).astype(np.float32)
        sk = scores.sketch(Blocks.of(a), sketch_size=k, projection=None, rng=np.random.default_rng(1))
        assert scores.sketch_error_floor(d, k) < sk.estimate, (n, d, k)


# ------------------------------------------------------------------ designs
def test_inclusion_probabilities_cap_at_one_and_sum_to_m():
    q = np.array([100.0, 50.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    pi = sampling.inclusion_probabilities(q, 3.0)
    assert np.isclose(pi.sum(), 3.0) and pi[0] == 1.0 and pi[1] == 1.0 and pi[-1] == 0.0
    assert np.allclose(pi[2:6], 0.25)


@pytest.mark.slow
def test_pivotal_keeps_inclusion_probabilities_and_fixed_size():
    rng = np.random.default_rng(7)
    n, m, reps = 200, 20, 1500
    coords = rng.standard_normal((n, 3))
    pi = sampling.inclusion_probabilities(rng.random(n) + 0.2, float(m))
    counts = np.zeros(n)
    for r in range(reps):
        idx = sampling.pivotal(pi, coords, np.random.default_rng([7, r]))
        assert idx.size == m and np.unique(idx).size == m, "pivotal sampling has a fixed size and no repeats"
        counts[idx] += 1
    z = (counts / reps - pi) / np.sqrt(pi * (1 - pi) / reps)
    # 200 roughly normal z-scores (every pi * reps >= 40): |z| > 4.5 has probability ~1e-3 in all;
    # a bias of 0.15 * pi in an item of pi = 0.1 would give |z| ~ 5
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    assert abs(np.mean(z)) < 4.5 / np.sqrt(n)


def test_pivotal_spreads_the_sample_over_space():
    grid = np.stack(np.meshgrid(np.arange(40.0), np.arange(40.0)), -1).reshape(-1, 2)
    pi = np.full(grid.shape[0], 40 / grid.shape[0])

    def nearest(idx):
        x = grid[idx]
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)) + np.eye(len(idx)) * 1e9
        return d.min(1).mean()

    piv = np.mean([nearest(sampling.pivotal(pi, grid, np.random.default_rng(s))) for s in range(20)])
    ber = np.mean([nearest(sampling.bernoulli(pi, np.random.default_rng(s))) for s in range(20)])
    assert piv > 1.15 * ber, (piv, ber)


@pytest.mark.parametrize("scheme", ["pivotal", "bernoulli", "replacement"])
def test_weights_make_the_weighted_mean_unbiased(scheme):
    pool = make_pool(n=200, d=6, seed=1)
    values = np.random.default_rng(0).random(200) * 5  # a fixed per-item "loss"
    full = values.mean()
    sel = LeverageSampling(budget=40, scheme=scheme)
    estimates = []
    for seed in range(300):
        out = sel.select(pool, SelectContext(seed=seed))
        estimates.append(np.sum(out.weights * values[out.indices]) / 40)
    estimates = np.asarray(estimates)
    se = estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert abs(estimates.mean() - full) < 4 * se + 1e-9, (estimates.mean(), full, se)


def test_same_seed_same_selection_other_seed_other():
    pool = make_pool(n=240, seed=2)
    a = LeverageSampling(budget=30).select(pool, SelectContext(seed=5, epoch=1))
    b = LeverageSampling(budget=30).select(make_pool(n=240, seed=2), SelectContext(seed=5, epoch=1))
    c = LeverageSampling(budget=30).select(pool, SelectContext(seed=6, epoch=1))
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.indices, c.indices)


def test_scores_are_reused_across_epochs_for_the_same_pool():
    pool = make_pool(n=240, seed=3)
    sel = LeverageSampling(budget=30)
    first = sel.select(pool, SelectContext(seed=0, epoch=0))
    second = sel.select(pool, SelectContext(seed=0, epoch=1))
    assert first.meta["scores_cached"] is False and second.meta["scores_cached"] is True
    fresh = LeverageSampling(budget=30).select(pool, SelectContext(seed=0, epoch=1))
    assert np.array_equal(second.indices, fresh.indices)


def test_budget_as_count_and_fraction():
    pool = make_pool(n=240)
    assert len(LeverageSampling(budget=17).select(pool, SelectContext(seed=0))) == 17
    assert len(LeverageSampling(budget=0.25).select(pool, SelectContext(seed=0))) == 60
    assert len(LeverageSampling(budget=1.0).select(pool, SelectContext(seed=0))) == 240


def test_meta_breaks_the_cost_down():
    out = LeverageSampling(budget=30).select(make_pool(), SelectContext(seed=0))
    assert {"score_s", "sample_s", "coords_s", "method", "rank", "kappa"} <= set(out.meta)
    assert out.meta["size"] == 30 and out.meta["expected_size"] == 30


# ------------------------------------------------------------------ bad input
def _named(sel, pool, pattern):
    sel.config_path = "pipeline.stages.lev"
    with pytest.raises(ConfigError, match=pattern) as err:
        sel.select(pool, SelectContext(seed=0))
    assert "\n" not in str(err.value)


def test_budget_larger_than_the_pool_names_the_setting():
    _named(LeverageSampling(budget=241), make_pool(), r"^pipeline\.stages\.lev\.budget is 241, larger than the pool of 240")


def test_nan_features_name_the_source():
    x = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)
    x[17, 2] = np.nan
    for method in ("exact", "sketch"):
        _named(LeverageSampling(budget=10, method=method, sketch_size=20), Pool(100, features=x), r"^pipeline\.stages\.lev\.source is 'features', whose values include NaN")
    _named(LeverageSampling(budget=10, score="ridge"), Pool(100, features=x), r"^pipeline\.stages\.lev\.source")


def test_non_positive_pool_weights_are_refused():
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    w = np.ones(50)
    w[3] = 0.0
    _named(LeverageSampling(budget=5), Pool(50, weights=w, features=x), r"^pipeline\.stages\.lev: the pool's weights .* finite positive")


def test_bad_sketch_sizes_name_the_setting():
    pool = make_pool(n=240, d=8)
    _named(LeverageSampling(budget=5, method="sketch", sketch_size=7), pool, r"^pipeline\.stages\.lev\.sketch_size is 7, fewer rows than the 8 columns")
    _named(LeverageSampling(budget=5, method="sketch", sketch_size=241), pool, r"^pipeline\.stages\.lev\.sketch_size is 241, more rows than the pool's 240")
    _named(LeverageSampling(budget=5, method="sketch", projection=9), pool, r"^pipeline\.stages\.lev\.projection is 9, more than the 8 columns")


def test_budget_beyond_the_items_with_a_score():
    x = np.zeros((60, 3), np.float32)
    x[:10] = np.random.default_rng(0).standard_normal((10, 3))
    _named(LeverageSampling(budget=20, scheme="pivotal"), Pool(60, features=x), r"^pipeline\.stages\.lev\.budget asks for 20 items but only 10 have a positive score")
    out = LeverageSampling(budget=20, uniform_mix=0.2).select(Pool(60, features=x), SelectContext(seed=0))
    assert len(out) == 20


def test_earlier_weights_scale_the_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 400)
    sel = LeverageSampling(budget=40, method="exact")
    got = sel._scores(sel._blocks(Pool(400, weights=w, features=x)), SelectContext(seed=0)).values
    assert np.max(np.abs(got - _reference(x * np.sqrt(w)[:, None]))) < 1e-5


# ------------------------------------------------------------------ out of core
def test_memory_mapped_pool_is_read_in_blocks(tmp_path):
    from selectkit.data.arrays import MappedArrays

    rng = np.random.default_rng(4)
    x = _matrix(5000, 7, 50.0, seed=4)
    np.save(tmp_path / "x.npy", x)
    mapped = MappedArrays(np.load(tmp_path / "x.npy", mmap_mode="r"))
    assert mapped.mapped
    reads = []

    def features(ids):
        reads.append(ids.shape[0])
        return mapped.features(ids)

    pool = Pool(5000, providers={"features": features})
    if not hasattr(pool, "get_at"):
        pytest.skip("this selectkit's Pool has no per-position access")
    sel = LeverageSampling(budget=100, block_rows=600, method="exact")
    got = sel._scores(sel._blocks(pool), SelectContext(seed=0)).values
    assert max(reads) <= 600, "no read larger than a block"
    assert np.max(np.abs(got - _reference(x))) < 1e-5 * got.max()
    out = sel.select(pool, SelectContext(seed=0))
    assert len(out) == 100 and max(reads) <= 600
    del rng
