"""Where synthetic samples land: exact segments towards true nearest neighbours (checked against a
brute-force numpy reference), the Borderline-SMOTE danger set, ADASYN's allocation, determinism, and
the same properties for classes searched over shards (``gather_below``)."""

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.selector import Pool, SelectContext
from selectkit_plugins.smote import (
    ADASYN,
    SMOTE,
    ADASYNSelector,
    BorderlineSMOTE,
    BorderlineSMOTESelector,
    RandomOverSelector,
    RandomUnderSelector,
    SMOTESelector,
)


def _pool(X, y):
    return Pool(np.arange(y.size, dtype=np.int64), labels=y, features=X)


def brute_knn(X, rows, candidates, k):
    """For each of ``rows``, its ``k`` nearest ``candidates`` (itself excluded), by full distance sort."""
    d = ((X[rows, None, :].astype(np.float64) - X[None, candidates, :].astype(np.float64)) ** 2).sum(-1)
    d[rows[:, None] == candidates[None, :]] = np.inf
    return candidates[np.argsort(d, axis=1, kind="stable")[:, :k]]


def brute_other_counts(X, y, rows, m):
    """How many of each row's ``m`` nearest neighbours (any class) are of another class."""
    nn = brute_knn(X, rows, np.arange(y.size), m)
    return (y[nn] != y[rows][:, None]).sum(axis=1)


def assert_exact_segments(X, syn_features, parents, lam):
    p0, p1 = parents[:, 0], parents[:, 1]
    want = X[p0] + lam[:, None] * (X[p1] - X[p0])
    assert syn_features.dtype == want.dtype == np.float32
    assert np.array_equal(syn_features, want), "x_new must equal x[p0] + lam * (x[p1] - x[p0]) exactly"
    assert np.all((lam >= 0) & (lam < 1))


def assert_neighbours(parents, reference):
    """``reference[p0]`` lists the allowed neighbours of seed ``p0``."""
    for p0, p1 in parents:
        assert p1 in reference[p0], f"{p1} is not among the nearest neighbours of {p0}"


@pytest.mark.parametrize("cls", [SMOTESelector, ADASYNSelector])
def test_smote_and_adasyn_segments_towards_same_class_neighbours(cls, data3):
    X, y = data3
    k = 4
    sel = cls(k_neighbors=k).select(_pool(X, y), SelectContext(seed=3))
    syn = sel.synthetic
    assert np.array_equal(sel.indices, np.arange(y.size + len(syn)))
    assert_exact_segments(X, syn.features, syn.parents, syn.lam)
    assert np.array_equal(syn.labels, y[syn.parents[:, 0]]), "a synthetic sample takes its seed's class"
    assert np.array_equal(y[syn.parents[:, 1]], y[syn.parents[:, 0]])
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        ref = dict(zip(rows, brute_knn(X, rows, rows, k)))
        assert_neighbours(syn.parents[syn.labels == c], ref)


@pytest.mark.parametrize("neighbors", [{"backend": "ivf", "nlist": 8, "nprobe": 8}, {"backend": "hnsw"}, {"backend": "flat", "metric": "cosine"}])
def test_approximate_and_other_metric_searches(neighbors, data3):
    """Other searches change which neighbours are found, never the segment property or the counts."""
    X, y = data3
    if neighbors["backend"] == "hnsw":
        pytest.importorskip("faiss")  # HNSW is a FAISS index (the `faiss` extra)
    sel = SMOTESelector(k_neighbors=4, neighbors=neighbors).select(_pool(X, y), SelectContext(seed=0))
    syn = sel.synthetic
    assert_exact_segments(X, syn.features, syn.parents, syn.lam)
    assert np.array_equal(y[syn.parents[:, 1]], syn.labels) and np.all(syn.parents[:, 0] != syn.parents[:, 1])
    assert np.bincount(syn.labels, minlength=3).tolist() == [0, 210, 260]
    if neighbors["backend"] == "ivf":  # 8 of 8 lists probed: the search is exhaustive, hence exact
        rows = np.flatnonzero(y == 2)
        assert_neighbours(syn.parents[syn.labels == 2], dict(zip(rows, brute_knn(X, rows, rows, 4))))


def test_estimator_rows_are_the_same_segments(data3):
    X, y = data3
    est = SMOTE(k_neighbors=4, random_state=0)
    X_res, y_res = est.fit_resample(X, y)
    assert np.array_equal(X_res[: y.size], X) and np.array_equal(y_res[: y.size], y)
    assert_exact_segments(X, X_res[y.size :], est.synthetic_parents_, est.synthetic_lam_)
    assert np.array_equal(y_res[y.size :], y[est.synthetic_parents_[:, 0]])


def test_float64_input_keeps_its_dtype(data2):
    X, y = data2
    X64 = X.astype(np.float64)
    est = SMOTE(k_neighbors=3, random_state=0)
    X_res, _ = est.fit_resample(X64, y)
    p, lam = est.synthetic_parents_, est.synthetic_lam_.astype(np.float64)
    assert X_res.dtype == np.float64
    assert np.array_equal(X_res[y.size :], X64[p[:, 0]] + lam[:, None] * (X64[p[:, 1]] - X64[p[:, 0]]))


def test_seeds_are_spread_evenly(data2):
    X, y = data2
    sel = SMOTESelector(k_neighbors=3).select(_pool(X, y), SelectContext(seed=0))
    per_seed = np.bincount(sel.synthetic.parents[:, 0], minlength=y.size)[y == 1]
    g, n = 400 - 60, 60
    assert per_seed.sum() == g and per_seed.min() == g // n and per_seed.max() == g // n + 1


# ------------------------------------------------------------------------------- Borderline-SMOTE


def hand_made():
    """1-D islands far apart, so each minority point's m=3 neighbours are fixed by hand:

    * a (x=0) has only majority neighbours: noise;
    * b (x=100) and b2 (x=100.13) each have two majority neighbours out of three: danger;
    * c1, c2, c3 (x=210, 210.1, 210.25) have one: safe.
    A far island of 20 majority points makes class 1 the minority (6 vs 28).
    """
    minority = {"a": 0.0, "b": 100.0, "b2": 100.13, "c1": 210.0, "c2": 210.1, "c3": 210.25}
    majority = [0.1, -0.15, 0.22, 0.3, 99.9, 100.3, 99.6, 210.45] + [400 + 0.01 * i for i in range(20)]
    x = np.array(list(minority.values()) + majority, dtype=np.float32)[:, None]
    y = np.array([1] * len(minority) + [0] * len(majority), dtype=np.int64)
    return x, y, {name: i for i, name in enumerate(minority)}


def test_danger_set_of_hand_made_example():
    X, y, at = hand_made()
    assert list(brute_other_counts(X, y, np.arange(6), 3)) == [3, 2, 2, 1, 1, 1], "the example is what its docstring says"
    sel = BorderlineSMOTESelector(k_neighbors=2, m_neighbors=3).select(_pool(X, y), SelectContext(seed=0))
    assert sel.meta["danger"] == {1: 2} and sel.meta["noise"] == {1: 1}
    seeds = sel.synthetic.parents[:, 0]
    assert sorted(set(seeds.tolist())) == [at["b"], at["b2"]], "only danger points seed"
    assert np.bincount(seeds, minlength=6)[[at["b"], at["b2"]]].tolist() == [11, 11], "28 - 6 = 22, evenly"
    minority = np.arange(6)
    ref = dict(zip(minority, brute_knn(X, minority, minority, 2)))
    assert_neighbours(sel.synthetic.parents, ref)


def test_borderline_2_may_step_towards_other_classes_but_only_halfway():
    X, y, at = hand_made()
    sel = BorderlineSMOTESelector(k_neighbors=3, m_neighbors=3, kind="borderline-2").select(_pool(X, y), SelectContext(seed=0))
    syn = sel.synthetic
    assert set(syn.parents[:, 0].tolist()) == {at["b"], at["b2"]}
    ref = dict(zip(np.arange(6), brute_knn(X, np.arange(6), np.arange(y.size), 3)))
    assert_neighbours(syn.parents, ref)
    other = y[syn.parents[:, 1]] != 1
    assert other.any() and (~other).any()
    assert np.all(syn.lam[other] < 0.5), "towards another class lam stays below 0.5"
    assert_exact_segments(X, syn.features, syn.parents, syn.lam)
    assert np.all(syn.labels == 1)


@pytest.mark.parametrize("kind", ["borderline-1", "borderline-2"])
def test_borderline_on_random_data_matches_brute_force(kind, data3):
    X, y = data3
    k, m = 3, 8
    est = BorderlineSMOTE(k_neighbors=k, m_neighbors=m, kind=kind, random_state=0)
    X_res, _ = est.fit_resample(X, y)
    assert_exact_segments(X, X_res[y.size :], est.synthetic_parents_, est.synthetic_lam_)
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        other = brute_other_counts(X, y, rows, m)
        danger = rows[(2 * other >= m) & (other < m)]
        mine = est.synthetic_parents_[y[est.synthetic_parents_[:, 0]] == c]
        assert set(mine[:, 0].tolist()) == set(danger.tolist())
        candidates = rows if kind == "borderline-1" else np.arange(y.size)
        assert_neighbours(mine, dict(zip(danger, brute_knn(X, danger, candidates, k))))


def test_class_without_danger_points_gets_nothing(make_data):
    X, y = make_data(sizes=(200, 30), d=4, spread=20.0)
    with pytest.warns(UserWarning, match="no point in danger"):
        sel = BorderlineSMOTESelector().select(_pool(X, y), SelectContext(seed=0))
    assert sel.num_synthetic == 0 and sel.meta["no_danger"] == [1]


# ------------------------------------------------------------------------------------ ADASYN


def test_adasyn_allocation_is_proportional_to_hardness(data3):
    X, y = data3
    k = 5
    est = ADASYN(k_neighbors=k, random_state=0)
    est.fit_resample(X, y)
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        hard = brute_other_counts(X, y, rows, k)
        g = est.sampling_strategy_[c]
        made = np.bincount(est.synthetic_parents_[:, 0], minlength=y.size)[rows]
        exact = hard * g / hard.sum()
        assert made.sum() == g
        assert np.all((made == np.floor(exact)) | (made == np.floor(exact) + 1)), "each point's share, rounded"
        assert np.all(made[hard == 0] == 0), "easy points seed nothing"
        assert made[hard == hard.max()].mean() > made[hard == np.median(hard)].mean()


def test_adasyn_falls_back_to_even_spread_when_nothing_is_hard(make_data):
    X, y = make_data(sizes=(200, 30), d=4, spread=20.0)
    with pytest.warns(UserWarning, match="evenly"):
        sel = ADASYNSelector().select(_pool(X, y), SelectContext(seed=0))
    per_seed = np.bincount(sel.synthetic.parents[:, 0], minlength=y.size)[y == 1]
    assert per_seed.sum() == 170 and per_seed.max() - per_seed.min() <= 1


# ------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("cls", [SMOTESelector, BorderlineSMOTESelector, ADASYNSelector, RandomOverSelector, RandomUnderSelector])
def test_same_seed_same_output_other_seed_other_output(cls, data3):
    X, y = data3

    def run(seed, epoch=0):
        sel = cls().select(_pool(X, y), SelectContext(seed=seed, epoch=epoch))
        syn = sel.synthetic
        return sel.indices, None if syn is None else (syn.features, syn.parents, syn.lam)

    def same(a, b):
        if not np.array_equal(a[0], b[0]):
            return False
        return a[1] is None and b[1] is None or all(np.array_equal(u, v) for u, v in zip(a[1], b[1]))

    assert same(run(5), run(5))
    assert not same(run(5), run(6))
    assert not same(run(5), run(5, epoch=1))


def test_estimator_random_state(data3):
    X, y = data3
    a = SMOTE(random_state=1).fit_resample(X, y)[0]
    b = SMOTE(random_state=1).fit_resample(X, y)[0]
    c = SMOTE(random_state=2).fit_resample(X, y)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_interpolation_is_bit_exact_against_the_numpy_expression(dtype):
    # The compiled kernel (float32/float64, several threads' worth of rows) and the numpy path
    # (float16) must both give X[p0] + lam * (X[p1] - X[p0]) to the last bit, in X's dtype.
    from selectkit_plugins.smote.core import interpolate

    rng = np.random.default_rng(11)
    X = (rng.standard_normal((5000, 7)) * 1e3).astype(dtype)
    parents = rng.integers(0, 5000, size=(40_000, 2))
    lam = rng.random(40_000, dtype=np.float32)
    got = interpolate(X, parents, lam)
    lam_x = lam.astype(X.dtype)[:, None]
    want = X[parents[:, 0]] + lam_x * (X[parents[:, 1]] - X[parents[:, 0]])
    assert got.dtype == X.dtype and np.array_equal(got, want)
    out = np.zeros((40_010, 7), dtype=X.dtype)
    interpolate(X, parents, lam, out=out[10:])
    assert np.array_equal(out[10:], want) and not out[:10].any()


def test_features_far_from_the_origin_keep_true_neighbours():
    """Tabular features far from the origin against their spread (a year, a price): every synthetic
    row still steps towards one of its seed's true 5 nearest same-class neighbours, as imbalanced-learn's
    float64 search finds them, and the input is not modified."""
    rng = np.random.default_rng(11)
    X = (rng.standard_normal((1200, 6)) * np.array([1, 2, 1, 3, 1, 1]) + np.array([2000, 50, 1e4, 300, 7, 1e3])).astype(np.float32)
    y = (rng.random(1200) < 0.15).astype(np.int64)
    kept = X.copy()
    est = SMOTE(k_neighbors=5, random_state=0)
    est.fit_resample(X, y)
    rows = np.flatnonzero(y == 1)
    near = brute_knn(X, rows, rows, 5)
    reference = {int(r): set(map(int, nn)) for r, nn in zip(rows, near)}
    assert_neighbours(est.synthetic_parents_, reference)
    assert np.array_equal(X, kept)


# ------------------------------------------------------------------------------- over several ranks: gather_below
# Classes searched over shards with keyed draws keep every property above; a gathered class is bounded
# by providers.memory_cap_gb. Equal results at world 2 and 4: tests/distributed (the *_sharded cases).


@pytest.mark.parametrize("kind", ["borderline-1", "borderline-2"])
def test_keyed_borderline_seeds_only_danger_points(kind, data3):
    X, y = data3
    sel = BorderlineSMOTESelector(k_neighbors=4, m_neighbors=8, kind=kind, gather_below=0).select(_pool(X, y), SelectContext(seed=1))
    syn = sel.synthetic
    assert sel.meta["gathered"] == [] and all(s["sharded"] for s in sel.meta["neighbors"])
    assert_exact_segments(X, syn.features, syn.parents, syn.lam)
    for c in (1, 2):
        rows = np.flatnonzero(y == c)
        other = brute_other_counts(X, y, rows, 8)
        danger = rows[(2 * other >= 8) & (other < 8)]
        assert sel.meta["danger"][c] == danger.size
        seeds = syn.parents[syn.labels == c, 0]
        per = np.bincount(seeds, minlength=y.size)[danger]
        assert set(seeds.tolist()) <= set(danger.tolist()) and per.max() - per.min() <= 1, "danger points seed, evenly"
        candidates = rows if kind == "borderline-1" else np.arange(y.size)
        assert_neighbours(syn.parents[syn.labels == c], dict(zip(danger, brute_knn(X, danger, candidates, 4))))
        if kind == "borderline-2":
            towards_other = y[syn.parents[syn.labels == c, 1]] != c
            assert np.all(syn.lam[syn.labels == c][towards_other] < 0.5)


def test_keyed_smote_and_adasyn_keep_their_allocation(data3):
    X, y = data3
    smote = SMOTESelector(k_neighbors=4, gather_below=0).select(_pool(X, y), SelectContext(seed=3))
    adasyn = ADASYNSelector(k_neighbors=4, gather_below=0).select(_pool(X, y), SelectContext(seed=3))
    for sel in (smote, adasyn):
        syn = sel.synthetic
        assert_exact_segments(X, syn.features, syn.parents, syn.lam)
        assert np.bincount(syn.labels, minlength=3).tolist() == [0, 210, 260]
    for c, g in ((1, 210), (2, 260)):
        rows = np.flatnonzero(y == c)
        ref = dict(zip(rows, brute_knn(X, rows, rows, 4)))
        per = np.bincount(smote.synthetic.parents[smote.synthetic.labels == c, 0], minlength=y.size)[rows]
        assert per.sum() == g and per.min() == g // rows.size and per.max() == g // rows.size + 1
        assert_neighbours(smote.synthetic.parents[smote.synthetic.labels == c], ref)
        assert_neighbours(adasyn.synthetic.parents[adasyn.synthetic.labels == c], ref)
        hard = brute_other_counts(X, y, rows, 4)
        share = g * hard / hard.sum()
        got = np.bincount(adasyn.synthetic.parents[adasyn.synthetic.labels == c, 0], minlength=y.size)[rows]
        assert np.all((got == np.floor(share)) | (got == np.floor(share) + 1)), "largest remainders of g * h / sum(h)"


def test_keyed_draws_follow_the_seed(data3):
    X, y = data3
    run = lambda seed: SMOTESelector(gather_below=0).select(_pool(X, y), SelectContext(seed=seed)).synthetic  # noqa: E731
    a, again, other = run(0), run(0), run(1)
    assert np.array_equal(a.parents, again.parents) and np.array_equal(a.lam, again.lam) and np.array_equal(a.features, again.features)
    assert not np.array_equal(a.parents, other.parents) and not np.array_equal(a.lam, other.lam)


def test_the_rule_goes_by_class_size(data3):
    X, y = data3  # classes of 300, 90 and 40; 1 and 2 grow
    mixed = SMOTESelector(k_neighbors=4, gather_below=60).select(_pool(X, y), SelectContext(seed=2))
    assert mixed.meta["gathered"] == [2], "the class of 40 is gathered, the class of 90 is searched sharded"
    assert [s["base"] for s in mixed.meta["neighbors"]] == [1, 2] and mixed.meta["neighbors"][0]["sharded"]
    assert "sharded" not in mixed.meta["neighbors"][1]
    assert np.bincount(mixed.synthetic.labels, minlength=3).tolist() == [0, 210, 260]
    assert SMOTESelector().select(_pool(X, y), SelectContext(seed=2)).meta["gathered"] == [1, 2]


def test_a_gathered_class_is_bounded_by_the_memory_cap(data3):
    X, y = data3
    cap = 40 * X.shape[1] * 4 / 2**30  # bytes of the class of 40, not of the class of 90
    with pytest.raises(ConfigError, match=r"providers\.memory_cap_gb: selector \(adasyn\) gathers a class's 90 members.*selector\.gather_below \(now 100\)") as err:
        ADASYNSelector(gather_below=100).select(Pool(np.arange(y.size, dtype=np.int64), labels=y, features=X, memory_cap_gb=cap), SelectContext(seed=0))
    assert "\n" not in str(err.value)
    sel = ADASYNSelector(gather_below=60).select(Pool(np.arange(y.size, dtype=np.int64), labels=y, features=X, memory_cap_gb=cap), SelectContext(seed=0))
    assert sel.meta["gathered"] == [2] and sel.num_synthetic == 470


@pytest.mark.ddp
@pytest.mark.parametrize("cls, params", [(ADASYNSelector, {}), (BorderlineSMOTESelector, {"kind": "borderline-2"})])
def test_the_same_samples_when_a_rank_holds_no_rows(cls, params, data3):
    """430 rows in blocks of 200 on 4 ranks: the last rank owns no block (as a small pool over many
    ranks does); the class of 90 is searched sharded, the class of 40 gathered."""
    from selectkit.testing import check_selector_worlds

    X, y = data3
    check_selector_worlds(cls, {"gather_below": 60, **params}, {"features": X, "labels": y}, worlds=(4,), block_rows=200, seed=4)
