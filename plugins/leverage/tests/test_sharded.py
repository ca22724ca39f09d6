"""Leverage over a sharded pool: the block-wise pivotal design keeps inclusion probabilities and size,
the source is read one logical block at a time, and every method and score selects the same at
world 1, 2 and 4 (gloo ranks)."""

import numpy as np
import pytest

from selectkit import sampling
from selectkit.distributed import Comm, ShardLayout
from selectkit.selector import Pool, SelectContext
from selectkit_plugins.leverage import LeverageSampling
from selectkit_plugins.leverage.shards import block_pivotal


def _features(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.linspace(1, 3, d)
    x[: n // 20] *= 6
    return x.astype(np.float32)


def test_block_pivotal_keeps_inclusion_probabilities_and_size():
    rng = np.random.default_rng(1)
    n, m = 230, 37
    pi = sampling.inclusion_probabilities(rng.random(n) ** 2 + 0.01, float(m))
    coords = rng.standard_normal((n, 2)).astype(np.float32)
    layout = ShardLayout(n, block_rows=25)  # 10 blocks, the last of 5 rows: 10 leftovers at most
    runs = 500
    counts = np.zeros(n)
    for r in range(runs):
        pos, got_pi = block_pivotal(Comm.alone(), layout, pi, coords, lambda b: (r, 1, b), (r, 2))
        assert pos.size == m and np.unique(pos).size == m and np.all(np.diff(pos) > 0)
        np.testing.assert_array_equal(got_pi, pi[pos])
        counts[pos] += 1
    freq = counts / runs
    sd = np.sqrt(pi * (1 - pi) / runs)
    assert np.all(np.abs(freq - pi) <= 4.5 * sd + 1e-9), np.max(np.abs(freq - pi) / np.maximum(sd, 1e-12))


def test_source_read_one_logical_block_at_a_time():
    x = _features(600)
    asked = []

    def features(ids, **_):
        asked.append(len(ids))
        return x[np.asarray(ids)]

    for scheme in ("pivotal", "bernoulli", "replacement"):
        asked.clear()
        pool = Pool(600, providers={"features": features}, block_rows=64)
        out = LeverageSampling(budget=40, scheme=scheme).select(pool, SelectContext(seed=0))
        assert out.indices.size == 40 or scheme == "bernoulli"
        assert asked and max(asked) <= 64, (scheme, max(asked))


@pytest.mark.ddp
@pytest.mark.parametrize(
    "params",
    [
        {"budget": 50, "method": "sketch", "sketch_size": 60, "projection": 3},
        {"budget": 50, "score": "ridge", "ridge": 0.5, "uniform_mix": 0.2, "scheme": "bernoulli"},
        {"budget": 50, "score": "root", "p": 1.5, "scheme": "replacement", "block_rows": 16},
        {"budget": 0.2, "source": "embeddings", "tree_dims": 2},
    ],
    ids=["sketch_projection_pivotal", "ridge_mix_bernoulli", "root_replacement", "embeddings"],
)
def test_same_selection_at_every_world_size(params):
    from selectkit.worlds import check_selector_worlds

    x = _features()
    arrays = {"features": x, "embeddings": np.round(x * 2)}
    out = check_selector_worlds(LeverageSampling, params, arrays, worlds=(2, 4), seed=7, block_rows=40)
    assert out["indices"].size > 0


@pytest.mark.ddp
def test_rank_without_rows_and_rank_deficient_features():
    # 3 blocks of 120 rows over 4 ranks: the last rank owns none; a zero column makes Cholesky-QR2 run
    from selectkit.worlds import check_selector_worlds

    x = _features(300, 4)
    x[:, 2] = 0.0
    out = check_selector_worlds(LeverageSampling, {"budget": 30}, {"features": x}, worlds=(4,), seed=2, block_rows=120)
    assert out["indices"].size == 30
