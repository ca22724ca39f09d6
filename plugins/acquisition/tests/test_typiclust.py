"""TypiClust: the shared contract, invariants on a round pool, one pick per well-separated cluster and
each the cluster's most typical point (against a dense per-cluster reference), the labelled set
covering clusters, its YAML, the sharded read and the same picks at world 3."""

import numpy as np
import pytest

from selectkit.schema import check_selector_config
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.acquisition import TypiClust


def _blobs(sizes, d=3, spread=40.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(len(sizes), d))
    x = np.concatenate([c + rng.normal(size=(s, d)) for c, s in zip(centres, sizes)]).astype(np.float32)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return x, blob


def _most_typical(points, k):
    d = np.sqrt(((points[:, None, :].astype(np.float64) - points[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    mean = np.sort(d, axis=1)[:, :k].mean(axis=1)
    return int(np.argmin(mean))


def test_contract():
    check_selector(
        lambda **kw: TypiClust(**{"budget": 10, **kw}),
        pool_factory=lambda: make_pool(n=150, labelled=20),
        bad_params={"budget": [0, None, 10_000], "space": ["probs"], "k_neighbors": [0, 1.5], "max_clusters": [0], "min_cluster_size": [0], "n_iter": [0], "neighbors": ["x"]},
    )


@pytest.mark.parametrize("space", ["features", "embeddings"])
def test_invariants_on_a_round_pool(space, kit):
    pool = kit.round_pool(n=200, labelled=30)
    out = kit.select(TypiClust(budget=25, space=space), pool)
    kit.assert_invariants(pool, out, 25)
    assert out.meta["clusters"] == 55


def test_one_most_typical_point_per_cluster():
    sizes = [60, 50, 40, 30, 20]
    x, blob = _blobs(sizes)
    pool = Pool(x.shape[0], features=x)
    out = TypiClust(budget=5, k_neighbors=10).select(pool, SelectContext(seed=1, round=1))
    assert sorted(blob[out.indices].tolist()) == [0, 1, 2, 3, 4]
    assert blob[out.indices].tolist() == [0, 1, 2, 3, 4], "largest clusters first"
    for row in out.indices:
        members = np.flatnonzero(blob == blob[row])
        assert members[_most_typical(x[members], 10)] == row


def test_labelled_items_cover_their_clusters():
    sizes = [60, 50, 40]
    x, blob = _blobs(sizes, seed=3)
    labelled = np.flatnonzero(blob == 0)[:2]
    rest = np.setdiff1d(np.arange(x.shape[0]), labelled)
    pool = Pool(rest, features=x[rest], labelled=Pool(labelled, features=x[labelled]))
    out = TypiClust(budget=2, k_neighbors=10).select(pool, SelectContext(seed=0))
    assert set(blob[rest[out.indices]].tolist()) == {1, 2}, "the labelled cluster is covered already"
    assert out.meta["clusters"] == 3 + 1  # |L| + budget


def test_seeded():
    pool = make_pool(n=150, labelled=10)
    a = TypiClust(budget=12).select(pool, SelectContext(seed=0, round=1)).indices
    b = TypiClust(budget=12).select(make_pool(n=150, labelled=10), SelectContext(seed=0, round=1)).indices
    assert np.array_equal(a, b)


def test_yaml_is_typed_by_its_schema(kit):
    sel = check_selector_config("typiclust", kit.CONF / "typiclust.yaml")
    assert isinstance(sel, TypiClust) and sel.space == "features" and sel.k_neighbors == 20


def test_reads_its_rows_by_shard():
    # a sharded selector that read its rows whole (pool.get) would be refused by the pool
    assert TypiClust.sharded and not TypiClust.gathers
    out = TypiClust(budget=9).select(make_pool(n=120, labelled=20), SelectContext(seed=1, round=1))
    assert np.unique(out.indices).size == 9


@pytest.mark.ddp
def test_same_picks_at_three_ranks():
    # 480 items in blocks of 50 at world 3 (the world-size suite runs 2 and 4): with 40 labelled the
    # pool has 9 blocks (3 per rank) and pool + labelled 10 (4, 3, 3), so rows move between ranks
    from selectkit.worlds import check_selector_worlds

    x, _ = _blobs([160, 120, 100, 60, 40], d=4, spread=6.0, seed=5)
    params = {"budget": 12, "k_neighbors": 8, "n_iter": 8}
    out = check_selector_worlds(TypiClust, params, {"features": x}, worlds=(3,), labelled=list(range(0, 480, 12)), seed=4, round=1, block_rows=50)
    assert np.unique(out["indices"]).size == 12
