"""Sensitivity sampling: the selector contract, unbiasedness of the weighted loss (statistical, fixed
seed), model evaluations only at cluster representatives, budgets, bad input, and its YAML."""

from pathlib import Path

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.schema import check_selector_config
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, make_pool
from selectkit_plugins.sensitivity import RandomProjection, SensitivitySampling

CONF = Path(__file__).resolve().parents[1] / "conf" / "selector" / "sensitivity.yaml"

BAD = {
    "fraction": [0, 1.5, "x", None],
    "size": [0, -2, 2.5, "x", 10_000],
    "eps": [0, 0.0, 1, 1.0, 1.5, -0.1, "x"],
    "k": [0, 2.5, None, 10_000],
    "embedding": ["raw", None],
    "cluster_term": ["losses", None],
    "by_label": ["yes", 1, None],
    "lipschitz": [-1.0, "x"],
    "power": [3, 0, "2"],
    "uniform": [0, 0.0, 1.5, -0.2],
    "n_iter": [0, 1.5],
    "max_points_per_centroid": [0, "x"],
    "encoder": ["x", 3],
    "neighbors": ["x"],
    "scheme": ["iid", None],
}


@pytest.mark.parametrize("embedding,term,scheme", [("model", "loss", "replacement"), ("features", "size", "replacement"), ("features", "loss", "pivotal")])
def test_contract(embedding, term, scheme):
    check_selector(
        lambda **kw: SensitivitySampling(**{"k": 6, "fraction": 0.2, "embedding": embedding, "cluster_term": term, "scheme": scheme, **kw}),
        bad_params=BAD,
        stochastic=True,
    )


def test_yaml_is_typed_by_its_schema():
    sel = check_selector_config("sensitivity", CONF)
    assert isinstance(sel, SensitivitySampling) and sel.k == 100 and sel.embedding == "model"
    assert sel.default_schedule == "once"


def _clustered(n=600, d=4, groups=6, seed=0, exponent=1.2, outliers=5):
    """Features in Gaussian groups and a skewed per-item loss that grows with the distance to the
    group's centre (the loss a sensitivity bound is built for), plus a few outliers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(groups, d))
    g = rng.integers(groups, size=n)
    x = centres[g] + rng.normal(size=(n, d))
    base = rng.gamma(0.5, 0.2, size=groups)[g]
    losses = base + 0.3 * np.sum((x - centres[g]) ** 2, axis=1) ** exponent
    losses[rng.choice(n, outliers, replace=False)] *= 20
    return x.astype(np.float32), losses.astype(np.float32)


@pytest.mark.parametrize("weighted,term,scheme", [(False, "loss", "replacement"), (True, "loss", "replacement"), (False, "size", "replacement"), (True, "size", "replacement"), (False, "loss", "pivotal"), (True, "size", "pivotal")])
def test_weighted_subset_loss_is_unbiased(weighted, term, scheme):
    """Over 300 seeds the mean of the weighted subset loss lies within 4 standard errors of the full
    (pool-weighted) mean loss; the unweighted mean of the same draws, which over-counts the
    high-sensitivity items, lies far outside that bound (the test can fail)."""
    x, losses = _clustered()
    n = x.shape[0]
    prior = np.random.default_rng(9).uniform(0.2, 1.8, size=n) if weighted else None
    truth = float(np.mean(losses * (1.0 if prior is None else prior)))
    estimates, naive, mean_w = [], [], []
    sel = SensitivitySampling(size=40, k=10, embedding="features", by_label=False, cluster_term=term, uniform=0.1, scheme=scheme)
    for seed in range(300):
        pool = Pool(n, weights=prior, features=x, losses=losses)
        out = sel.select(pool, SelectContext(seed=seed))
        w = out.weights.astype(np.float64) * (1.0 if prior is None else prior[out.indices])
        estimates.append(np.mean(w * losses[out.indices]))
        naive.append(np.mean(losses[out.indices]))
        mean_w.append(np.mean(w))
    estimates = np.asarray(estimates)
    se = estimates.std(ddof=1) / np.sqrt(estimates.size)
    assert abs(estimates.mean() - truth) <= 4 * se, (estimates.mean(), truth, se)
    assert abs(np.mean(naive) - truth) > 4 * se, "the unweighted draws are biased: the test has power"
    w_mean = float(np.mean(mean_w))
    target = 1.0 if prior is None else float(prior.mean())
    assert abs(w_mean - target) <= 4 * np.std(mean_w, ddof=1) / np.sqrt(len(mean_w)), "weights have mean 1 under the design"


def test_sensitivity_beats_uniform_on_a_loss_it_bounds():
    """At equal draws the weighted estimate varies less than a uniform sample's mean when the loss
    follows the bound (a cluster level plus a multiple of the squared distance to the centre)."""
    x, losses = _clustered(seed=1, exponent=1.0, outliers=0)
    n = x.shape[0]
    ours, uniform = [], []
    for seed in range(150):
        out = SensitivitySampling(size=40, k=10, embedding="features", by_label=False, power=2).select(Pool(n, features=x, losses=losses), SelectContext(seed=seed))
        ours.append(np.mean(out.weights * losses[out.indices]))
        uniform.append(np.mean(losses[np.random.default_rng([seed, 5]).integers(n, size=40)]))
    assert np.std(ours) < 0.6 * np.std(uniform), (np.std(ours), np.std(uniform))


def test_pivotal_draws_distinct_items_of_the_budget_and_varies_less_than_iid_draws():
    """Pivotal sampling along the clusters: exactly the budget, no item twice, and at equal size the
    weighted estimate varies less than with i.i.d. draws from the same probabilities, by more than
    two standard errors of the ratio of the spreads (about 1/sqrt(seeds))."""
    x, losses = _clustered(seed=2)
    n, seeds = x.shape[0], 400
    spread = {}
    for scheme in ("replacement", "pivotal"):
        sel = SensitivitySampling(size=40, k=10, embedding="features", by_label=False, power=1, scheme=scheme)
        estimates = []
        for seed in range(seeds):
            out = sel.select(Pool(n, features=x, losses=losses), SelectContext(seed=seed))
            if scheme == "pivotal":
                assert out.indices.shape[0] == 40 and np.unique(out.indices).shape[0] == 40
                assert out.meta["scheme"] == "pivotal" and out.meta["size"] == 40
            estimates.append(np.mean(out.weights.astype(np.float64) * losses[out.indices]))
        spread[scheme] = float(np.std(estimates))
    assert spread["pivotal"] < (1 - 2 / np.sqrt(seeds)) * spread["replacement"], spread


def test_losses_are_computed_only_at_cluster_representatives():
    x, losses = _clustered()
    asked = []

    def provider(ids):
        asked.append(np.asarray(ids).copy())
        return losses[ids]

    pool = Pool(x.shape[0], providers={"features": lambda ids: x[ids], "losses": provider})
    out = SensitivitySampling(size=50, k=12, embedding="features", by_label=False).select(pool, SelectContext(seed=3))
    assert len(asked) == 1 and asked[0].size == 2 * out.meta["clusters"] == 24, "one call: each cluster's representative and one probe"
    assert out.meta["model_evals"] == 24 and np.unique(asked[0]).size == 24
    asked.clear()
    out = SensitivitySampling(size=50, k=12, embedding="features", by_label=False, lipschitz=0.5).select(pool, SelectContext(seed=3))
    assert len(asked) == 1 and asked[0].size == 12 == out.meta["model_evals"], "a given lipschitz needs the representatives only"
    assert {"embed_s", "cluster_s", "score_s", "sample_s"} <= set(out.meta)


def _kmeans(x, k, ctx, **kw):
    """The selector's k-means of ``x`` (one group, trained on every point) at world size 1."""
    from selectkit.distributed import Comm, ShardedArray, ShardLayout, sharded_kmeans

    seed = int(ctx.rng(0x4B4D, 0).integers(2**31))
    return sharded_kmeans(Comm.alone(), ShardedArray(x, ShardLayout(x.shape[0])), k, n_iter=20, seed=seed, reduce="block", **kw)


def test_representatives_are_nearest_their_centre():
    x, losses = _clustered(seed=2)
    asked = []
    pool = Pool(x.shape[0], providers={"features": lambda ids: x[ids], "losses": lambda ids: asked.append(ids.copy()) or losses[ids]})
    sel = SensitivitySampling(size=30, k=8, embedding="features", by_label=False, max_points_per_centroid=None)
    ctx = SelectContext(seed=4)
    sel.select(pool, ctx)
    km = _kmeans(x, 8, ctx)
    for c in range(8):
        members = np.flatnonzero(km.assignment == c)
        assert members[np.argmin(km.distances[members])] in set(asked[0].tolist())


def test_same_seed_same_coreset_other_epoch_other_coreset():
    draw = lambda seed, epoch: SensitivitySampling(k=8, fraction=0.3).select(make_pool(), SelectContext(seed=seed, epoch=epoch))
    a, b = draw(0, 0), draw(0, 0)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.indices, draw(1, 0).indices)
    assert not np.array_equal(a.indices, draw(0, 2).indices), "a refresh at another epoch draws anew"


@pytest.mark.parametrize(
    "kw,size",
    [({"fraction": 0.25}, 60), ({"size": 37}, 37), ({"eps": 0.25, "k": 5}, 5 + 16), ({"eps": 0.1, "k": 7}, 107), ({"fraction": 1.0}, 240)],
)
def test_budget_rules(kw, size):
    out = SensitivitySampling(**{"k": 5, **kw}).select(make_pool(), SelectContext(seed=0))
    assert len(out) == size and out.meta["size"] == size


def test_weights_positive_and_bounded_by_the_uniform_share():
    x, losses = _clustered()
    for u in (0.05, 0.5, 1.0):
        out = SensitivitySampling(size=200, k=10, embedding="features", by_label=False, uniform=u).select(Pool(x.shape[0], features=x, losses=losses), SelectContext(seed=1))
        assert np.all(out.weights > 0) and out.weights.max() <= 1.0 / u + 1e-5
    flat = SensitivitySampling(size=200, k=10, embedding="features", by_label=False, uniform=1.0).select(Pool(x.shape[0], features=x, losses=losses), SelectContext(seed=1))
    assert np.allclose(flat.weights, 1.0), "uniform=1 is plain uniform sampling"


def _raises(sel, pool, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        sel.select(pool, SelectContext(seed=0))
    assert "\n" not in str(err.value)


def test_budget_larger_than_the_pool_names_the_setting():
    _raises(SensitivitySampling(size=241, k=5), make_pool(), r"^selector\.size is 241, larger than the 240 items")
    _raises(SensitivitySampling(eps=0.06, k=5), make_pool(), r"^selector\.eps=0\.06 with k=5 asks for k \+ 1/eps\^2 = 283 draws")
    _raises(SensitivitySampling(size=5, eps=0.5), make_pool(), r"^selector\.size and eps both set the budget")
    _raises(SensitivitySampling(k=241), make_pool(), r"^selector\.k is 241, more clusters than the 240 items")


def test_k_is_bounded_by_the_draws_with_a_log_line(caplog):
    # the defaults on a small pool: k=100 clusters for 24 draws would leave most clusters undrawn
    with caplog.at_level("WARNING", logger="selectkit.sensitivity"):
        out = SensitivitySampling(k=100, fraction=0.1).select(make_pool(), SelectContext(seed=0))
    assert out.meta["clusters"] <= 24 and out.meta["model_evals"] <= 48
    assert out.meta["k"] == 100 and out.meta["k_effective"] == 24 == len(out)
    assert any("selector.k=100 is more clusters than the 24 draws; clustering into 24" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="selectkit.sensitivity"):
        out = SensitivitySampling(k=10, fraction=0.1).select(make_pool(), SelectContext(seed=0))
    assert out.meta["k_effective"] == 10 and not any("more clusters" in r.getMessage() for r in caplog.records)


def test_a_fitted_lipschitz_at_or_below_zero_is_logged_and_recorded(caplog):
    # losses that fall with the distance to the centre: the least-squares slope is negative
    x, _ = _clustered(seed=1)
    pool0 = Pool(x.shape[0], features=x, losses=np.ones(x.shape[0], np.float32))
    probe = SensitivitySampling(size=40, k=10, embedding="features", by_label=False, cluster_term="size")
    ctx = SelectContext(seed=0)
    km = _kmeans(x, 10, ctx)  # 600 items: below 10 * max_points_per_centroid, so the selector trains on all
    losses = (5.0 - km.distances / km.distances.max()).astype(np.float32)
    with caplog.at_level("WARNING", logger="selectkit.sensitivity"):
        out = SensitivitySampling(size=40, k=10, embedding="features", by_label=False).select(Pool(x.shape[0], features=x, losses=losses), ctx)
    assert out.meta["lipschitz"] == 0.0 and out.meta["lipschitz_slope"] < 0
    assert any("selector.lipschitz=null: fitted" in r.getMessage() and "set selector.lipschitz" in r.getMessage() for r in caplog.records)
    assert probe.select(pool0, ctx).meta["lipschitz_slope"] is None, "no fit with cluster_term=size"


def test_more_clusters_than_distinct_points_drops_the_empty_ones():
    x = np.repeat(np.random.default_rng(0).normal(size=(5, 3)), 20, axis=0).astype(np.float32)
    losses = np.linspace(0.1, 2.0, 100).astype(np.float32)
    out = SensitivitySampling(size=30, k=8, embedding="features", by_label=False).select(Pool(100, features=x, losses=losses), SelectContext(seed=0))
    assert out.meta["clusters"] == 5 and out.meta["k"] == 8 and out.meta["model_evals"] == 10
    assert len(out) == 30 and np.all(out.weights > 0)


def test_constant_and_nan_features_are_refused():
    x = np.ones((50, 4), np.float32)
    _raises(SensitivitySampling(k=3, embedding="features", by_label=False, cluster_term="size"), Pool(50, features=x), r"^selector\.embedding=features: the raw features are constant")
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    x[[7, 9], 2] = np.nan
    _raises(SensitivitySampling(k=3, embedding="features", by_label=False, cluster_term="size"), Pool(50, features=x), r"^selector\.embedding=features: 2 of 50 rows .* NaN or inf \(first: pool item 7\)")


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_non_positive_weights_from_an_earlier_stage_are_refused(bad):
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    w = np.ones(50)
    w[3] = bad
    _raises(SensitivitySampling(k=3, embedding="features", by_label=False, cluster_term="size"), Pool(50, weights=w, features=x), r"^selector: the weights from the stages before it must be finite and positive")


def test_negative_losses_are_refused():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    _raises(SensitivitySampling(k=3, embedding="features", by_label=False), Pool(50, features=x, losses=-np.ones(50, np.float32)), r"^selector: the model's loss at a cluster representative is negative")


def test_encoder_settings():
    pool = lambda: make_pool()
    out = SensitivitySampling(k=5, embedding="encoder", encoder={"_target_": "selectkit_plugins.sensitivity.RandomProjection", "out_features": 3}).select(pool(), SelectContext(seed=0))
    assert out.meta["dim"] == 3 and out.meta["embedding"] == "encoder"
    torch_enc = {"_target_": "torch.nn.Linear", "in_features": 8, "out_features": 2}
    a = SensitivitySampling(k=5, embedding="encoder", encoder=torch_enc).select(pool(), SelectContext(seed=0))
    b = SensitivitySampling(k=5, embedding="encoder", encoder=torch_enc).select(pool(), SelectContext(seed=0))
    assert a.meta["dim"] == 2 and np.array_equal(a.indices, b.indices), "a randomly initialised encoder is seeded by the run"
    _raises(SensitivitySampling(k=5, embedding="encoder"), pool(), r"^selector\.encoder is needed by embedding=encoder")
    _raises(SensitivitySampling(k=5, embedding="encoder", encoder={"out_features": 2}), pool(), r"^selector\.encoder needs a _target_")
    _raises(SensitivitySampling(k=5, encoder=torch_enc), pool(), r"^selector\.encoder is only used with embedding=encoder")
    _raises(SensitivitySampling(k=5, embedding="encoder", encoder={"_target_": "torch.nn.Linear", "in_features": 5, "out_features": 2}), pool(), r"^selector\.encoder")
    _raises(SensitivitySampling(k=5, embedding="encoder", encoder={"_target_": "no.such.Thing"}), pool(), r"^selector\.encoder\._target_=no\.such\.Thing cannot be found")


def test_other_settings_that_do_not_fit_together():
    _raises(SensitivitySampling(k=5, cluster_term="size", lipschitz=1.0), make_pool(), r"^selector\.lipschitz scales the distance")
    _raises(SensitivitySampling(k=5, neighbors={"metric": "ip"}), make_pool(), r"^selector\.neighbors\.metric='ip'")
    _raises(SensitivitySampling(k=5, neighbors={"nprobes": 3}), make_pool(), r"^selector\.neighbors\.nprobes is not a neighbour setting")
    _raises(SensitivitySampling(k=5, neighbors={"device": "tpu"}), make_pool(), r"^selector\.neighbors\.device='tpu'")


def test_random_projection_keeps_distances_roughly():
    x = np.random.default_rng(0).normal(size=(40, 300)).astype(np.float32)
    y = RandomProjection(out_features=200, seed=1)(x)
    d0 = np.linalg.norm(x[:20] - x[20:], axis=1)
    d1 = np.linalg.norm(y[:20] - y[20:], axis=1)
    assert y.shape == (40, 200) and np.all(np.abs(d1 / d0 - 1) < 0.3)
    with pytest.raises(ValueError, match="out_features"):
        RandomProjection(out_features=0)


def test_clusters_split_over_classes_in_proportion():
    from selectkit_plugins.sensitivity.selector import _split

    assert _split(10, np.array([500, 300, 200])).tolist() == [5, 3, 2]
    assert _split(4, np.array([900, 50, 50])).tolist() == [2, 1, 1], "every class gets a cluster"
    assert _split(10, np.array([3, 1000])).tolist() == [1, 9]
    assert _split(50, np.array([2, 3])).tolist() == [2, 3], "never more clusters than a class has items"
    labels = np.array([0] * 100 + [1] * 60 + [2] * 40)
    x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    out = SensitivitySampling(size=30, k=10, embedding="features", cluster_term="size").select(Pool(200, features=x, labels=labels), SelectContext(seed=0))
    assert out.meta["k_used"] == 10 and out.meta["clusters"] == 10


def test_by_label_needs_labels():
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    _raises(SensitivitySampling(k=3, embedding="features", cluster_term="size"), Pool(50, features=x), "labels")


def test_training_visits_the_coreset_in_a_new_random_order_every_epoch():
    """The draws come gathered from the shards in pool order, and a coreset chosen once is reused at
    every epoch: the selector leaves the order to the sampler, which shuffles it per epoch (a coreset
    declared in random order would be trained in pool order, the same order every epoch)."""
    from selectkit.control import SelectionController
    from selectkit.pipeline import Pipeline, Stage
    from selectkit.sampler import SelectionSampler

    x, _ = _clustered()
    sel = SensitivitySampling(size=60, k=6, embedding="features", by_label=False, cluster_term="size")
    controller = SelectionController(Pipeline([Stage(sel)], seed=0), np.zeros(x.shape[0], np.int64), lambda ids: x[ids])
    sampler = SelectionSampler(controller, num_replicas=1, rank=0)
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        orders.append(np.array([item[0] if isinstance(item, tuple) else item for item in sampler]))
    assert np.array_equal(np.sort(orders[0]), np.sort(orders[1])), "one coreset, chosen once"
    assert not np.all(np.diff(orders[0]) >= 0), "not in pool order"
    assert not np.array_equal(orders[0], orders[1]), "another order at the next epoch"
