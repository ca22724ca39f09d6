"""k-center greedy and BADGE: the shared contract, invariants on a round pool with a labelled set, both
against brute-force references that use small dense distance matrices (allowed in tests only), the
labelled set's effect, duplicates, their YAML, the sharded read and the same picks at world 3."""

import numpy as np
import pytest

from selectkit.distributed import keyed_gumbel
from selectkit.schema import check_selector_config
from selectkit.selector import SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.acquisition import BADGE, KCenter
from selectkit_plugins.acquisition.base import SAMPLING, tie_key


def _dense(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _kcenter_reference(x, ref, budget, key):
    """Farthest-first traversal with a full [n, n + m] distance matrix."""
    n = x.shape[0]
    pool_d = _dense(x, x)
    mind = _dense(x, ref).min(axis=1) if ref.shape[0] else np.full(n, np.inf)
    picks = []
    for _ in range(budget):
        cand = mind.copy()
        cand[picks] = -np.inf
        best = cand.max()
        ties = np.flatnonzero(cand == best)
        row = int(ties[np.argmax(key[ties])])
        picks.append(row)
        mind = np.minimum(mind, pool_d[row])
    return np.array(picks)


def _badge_reference(g, budget, key, ctx):
    """k-means++ seeding from the largest norm, D^2 draws with a full [n, n] distance matrix: draw t is
    the argmax of log d^2 + Gumbel, the Gumbel draws keyed by pool position and ctx.key(SAMPLING, t)."""
    d = _dense(g, g)
    norms = (g.astype(np.float64) ** 2).sum(1)
    ties = np.flatnonzero(norms == norms.max())
    picks = [int(ties[np.argmax(key[ties])])]
    for t in range(1, budget):
        w = d[:, picks].min(axis=1)
        w[picks] = 0.0
        with np.errstate(divide="ignore"):
            picks.append(int(np.argmax(np.log(w) + keyed_gumbel(ctx.key(SAMPLING, t), np.arange(g.shape[0])))))
    return np.array(picks)


@pytest.mark.parametrize("cls", [KCenter, BADGE])
def test_contract(cls):
    check_selector(lambda **kw: cls(**{"budget": 12, **kw}), pool_factory=lambda: make_pool(n=150, labelled=30), bad_params={"budget": [0, 2.5, None, 10_000]})


def test_kcenter_bad_settings():
    check_selector(lambda **kw: KCenter(**{"budget": 8, **kw}), bad_params={"space": ["probs", None], "neighbors": ["flat", 3]})


@pytest.mark.parametrize("cls", [KCenter, BADGE])
def test_invariants_on_a_round_pool(cls, kit):
    pool = kit.round_pool(n=200, labelled=50)
    out = kit.select(cls(budget=60), pool)
    kit.assert_invariants(pool, out, 60)


@pytest.mark.parametrize("labelled", [0, 25])
def test_kcenter_matches_the_brute_force_traversal(labelled):
    pool = make_pool(n=180, labelled=labelled, seed=2)
    ctx = SelectContext(seed=4, round=1)
    out = KCenter(budget=40).select(pool, ctx)
    x = pool.get("embeddings")
    ref = pool.labelled.get("embeddings") if labelled else np.zeros((0, x.shape[1]), np.float32)
    expected = _kcenter_reference(x, ref, 40, tie_key(ctx, len(pool)))
    assert np.array_equal(out.indices, expected)
    assert np.all(np.diff(out.scores) <= 1e-6), "distances at pick time never grow"
    if labelled:
        full = np.sqrt(np.minimum(_dense(x, ref).min(1)[out.indices], np.inf))
        assert out.scores[0] == pytest.approx(full[0], rel=1e-4)


def test_kcenter_far_from_the_origin_matches_the_brute_force_traversal():
    """Raw features far from the origin against their spread (offset 1000): the float32 passes run on
    centred rows, so the traversal is still the float64 reference's."""
    from selectkit.selector import Pool

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((160, 5)) + 1000.0).astype(np.float32)
    ref = (rng.standard_normal((20, 5)) + 1000.0).astype(np.float32)
    pool = Pool(np.arange(160), features=x, labelled=Pool(np.arange(160, 180), features=ref))
    ctx = SelectContext(seed=3, round=1)
    out = KCenter(budget=30, space="features").select(pool, ctx)
    assert np.array_equal(out.indices, _kcenter_reference(x, ref, 30, tie_key(ctx, len(pool))))


def test_kcenter_covers_what_the_labelled_set_leaves_out():
    # three far-apart blobs; the labelled set sits in two of them: every pick before the third blob is
    # exhausted of far points must come from it
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    x = np.concatenate([c + rng.normal(size=(40, 2)) for c in centres]).astype(np.float32)
    ref = np.concatenate([centres[0] + rng.normal(size=(10, 2)), centres[1] + rng.normal(size=(10, 2))]).astype(np.float32)
    from selectkit.selector import Pool

    pool = Pool(np.arange(120), features=x, labelled=Pool(np.arange(120, 140), features=ref))
    out = KCenter(budget=1, space="features").select(pool, SelectContext(seed=0))
    assert 80 <= out.indices[0] < 120
    blind = KCenter(budget=3, space="features").select(Pool(np.arange(120), features=x), SelectContext(seed=0))
    assert sorted((blind.indices // 40).tolist()) == [0, 1, 2], "without a labelled set the first picks span the blobs"


def test_badge_matches_the_brute_force_seeding():
    pool = make_pool(n=220, seed=5)
    ctx = SelectContext(seed=7, round=2)
    out = BADGE(budget=35).select(pool, ctx)
    g = pool.get("grad_embeddings")
    expected = _badge_reference(g, 35, tie_key(ctx, len(pool)), ctx)
    assert np.array_equal(out.indices, expected)


def test_badge_second_draw_follows_d2():
    # after the first centre (the largest gradient embedding), the next item is drawn with probability
    # proportional to its squared distance to it: chi-square on 3000 seeds, and a refuted D (not D^2)
    from scipy.stats import chisquare

    from selectkit.selector import Pool

    g = np.array([[4.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [2.0, 2.0], [0.5, -2.0]], dtype=np.float32)
    counts = np.zeros(6)
    for s in range(3000):
        out = BADGE(budget=2).select(Pool(6, grad_embeddings=g), SelectContext(seed=s))
        assert out.indices[0] == 0
        counts[out.indices[1]] += 1
    d2 = ((g - g[0]) ** 2).sum(1).astype(np.float64)
    assert counts[0] == 0
    assert chisquare(counts[1:], 3000 * d2[1:] / d2[1:].sum()).pvalue > 1e-3
    d = np.sqrt(d2[1:])
    assert chisquare(counts[1:], 3000 * d / d.sum()).pvalue < 1e-6


def test_badge_is_distinct_with_duplicated_rows():
    from selectkit.selector import Pool

    g = np.repeat(np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32), 8, axis=0)
    out = BADGE(budget=20).select(Pool(40, grad_embeddings=g), SelectContext(seed=0))
    assert np.unique(out.indices).size == 20
    assert np.unique(out.indices[:5] // 8).size == 5, "the five distinct rows come first"


@pytest.mark.parametrize("name, cls", [("kcenter", KCenter), ("badge", BADGE)])
def test_yaml_is_typed_by_its_schema(name, cls, kit):
    sel = check_selector_config(name, kit.CONF / f"{name}.yaml")
    assert isinstance(sel, cls) and sel.budget == 10


def test_badge_first_pick_is_the_largest_norm_of_rows_far_from_the_origin():
    # rows far from the origin against their spread are centred for the distance passes; the first
    # pick and its meta.d2 must still be those of the rows as given, and the later d2 are distances
    from selectkit.selector import Pool

    rng = np.random.default_rng(0)
    g = (rng.standard_normal((500, 8)) + 5).astype(np.float32)
    out = BADGE(budget=5).select(Pool(500, grad_embeddings=g), SelectContext(seed=0))
    norms = (g.astype(np.float64) ** 2).sum(1)
    assert out.indices[0] == int(np.argmax(norms))
    assert out.meta["d2"][0] == pytest.approx(norms.max(), rel=1e-6)
    picks = out.indices
    for step in range(1, 5):
        expected = _dense(g[picks[step : step + 1]], g[picks[:step]]).min()
        assert out.meta["d2"][step] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("cls", [KCenter, BADGE])
def test_reads_its_rows_by_shard(cls):
    # a sharded selector that read its rows whole (pool.get) would be refused by the pool
    assert cls.sharded and not cls.gathers
    out = cls(budget=9).select(make_pool(n=120, labelled=20), SelectContext(seed=1, round=1))
    assert np.unique(out.indices).size == 9


def _far_rows(n, seed):
    return (np.random.default_rng(seed).standard_normal((n, 5)) + 1000.0).astype(np.float32)


@pytest.mark.ddp
@pytest.mark.parametrize(
    "cls, params, arrays, labelled",
    [
        # rows far from the origin: the distance passes centre them on the pool's block-ordered mean
        (KCenter, {"budget": 15, "space": "features"}, {"features": _far_rows(300, 2)}, list(range(0, 300, 11))),
        # ... and BADGE's first pick is the largest norm of the rows as given; five distinct rows,
        # 60 copies each: after five draws every item left is a duplicate of one drawn
        (BADGE, {"budget": 12}, {"grad_embeddings": np.repeat(_far_rows(5, 3), 60, axis=0)}, None),
    ],
    ids=["kcenter", "badge"],
)
def test_same_picks_at_three_ranks(cls, params, arrays, labelled):
    # world 3 (the world-size suite runs 2 and 4): blocks split unevenly over the ranks
    from selectkit.worlds import check_selector_worlds

    out = check_selector_worlds(cls, params, arrays, worlds=(3,), labelled=labelled, seed=2, round=1)
    assert np.unique(out["indices"]).size == params["budget"]
