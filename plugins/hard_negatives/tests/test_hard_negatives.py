"""hard_negatives: the selector contract, agreement with a brute-force reference of every filter,
exclusions, determinism, on_short, bad input, the pairs provider, whole tuples across ranks, and
dynamic re-mining in Lightning training (refresh on schedule, resume from a checkpoint)."""

import json
from pathlib import Path

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.providers import pairs_provider
from selectkit.selection import Tuples
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector, check_selector_config, make_pool
from selectkit_plugins.hard_negatives import FILTERS, HardNegatives

YAML = Path(__file__).resolve().parents[1] / "conf" / "selector" / "hard_negatives.yaml"


def test_contract():
    check_selector(
        lambda **kw: HardNegatives(**{"negatives": 2, "space": "features", "depth": 8, **kw}),
        bad_params={
            "negatives": [0, -1, 1.5, "x"],
            "metric": ["euclid"],
            "positives": ["given"],
            "sampling": ["hard"],
            "on_short": ["drop"],
            "relative_margin": [1.5, -0.1],
            "false_negative_ratio": [0, -1],
            "depth": [0],
            "rank_max": [1],
            "fraction": [0, 2],
            "space": [""],
        },
        stochastic=True,
    )


def test_contract_on_model_embeddings_with_random_sampling():
    check_selector(lambda **kw: HardNegatives(**{"negatives": 3, "sampling": "random", "rank_max": 20, **kw}), stochastic=True)


def test_sharded_and_only_selectkit_distributed_calls_torch_distributed():
    """The family reads its vectors by shard (whole only labels and pairs), and talks to the other
    ranks through `selectkit.distributed.Comm` alone, never torch.distributed itself."""
    import ast

    from selectkit_plugins.smote import SMOTESelector
    from selectkit_plugins.tuples import RandomTuples

    for cls in (HardNegatives, RandomTuples, SMOTESelector):
        assert cls.sharded and not cls.gathers, f"{cls.__name__} is sharded and gathers nothing whole"
    plugins = Path(__file__).resolve().parents[2]
    for folder in ("hard_negatives", "smote", "tuples"):
        for path in (plugins / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
                module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
                assert not any(n.startswith("torch.distributed") for n in names) and not module.startswith("torch.distributed"), path.name
                assert not (module == "torch" and "distributed" in names), path.name
                assert not (isinstance(node, ast.Attribute) and node.attr == "distributed" and getattr(node.value, "id", "") == "torch"), path.name


def test_config():
    sel = check_selector_config("hard_negatives", str(YAML))
    assert isinstance(sel, HardNegatives) and sel.default_schedule == "once"


# ----------------------------------------------------------------------------------- brute force
def _vectors(n=160, d=6, seed=0, classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.7 * rng.normal(size=(classes, d)).astype(np.float32)[labels]
    return x, labels


def _score(metric, a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        a = a / np.linalg.norm(a, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
        return a @ b.T
    if metric == "ip":
        return a @ b.T
    return -((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _reference(x, anchors, positives_of, corpus, labels, p):
    """The documented semantics on a dense score matrix: exclusions, score filters, rank window, top."""
    s = _score(p.get("metric", "cosine"), x[anchors], x[corpus])
    out = []
    for i, a in enumerate(anchors):
        pos = positives_of[i]
        ref = min(_score(p.get("metric", "cosine"), x[[a]], x[pos])[0])
        order = np.argsort(-s[i], kind="stable")
        kept = []
        for j in order:
            item, v = corpus[j], s[i, j]
            if item == a or item in pos:
                continue
            if labels is not None and p.get("exclude_same_label", True) and labels[item] == labels[a]:
                continue
            if p.get("absolute_margin") is not None and v > ref - p["absolute_margin"]:
                continue
            if p.get("relative_margin") is not None and v > ref - abs(ref) * p["relative_margin"]:
                continue
            if p.get("false_negative_ratio") is not None and v > ref + abs(ref) * (p["false_negative_ratio"] - 1):
                continue
            if p.get("max_score") is not None and v > p["max_score"]:
                continue
            if p.get("min_score") is not None and v < p["min_score"]:
                continue
            kept.append(item)
        lo, hi = p.get("rank_min", 0), p.get("rank_max") or len(kept)
        out.append(kept[lo:hi])
    return out


FILTER_CASES = [
    {},
    {"rank_min": 3, "rank_max": 12},
    {"absolute_margin": 0.1},
    {"relative_margin": 0.3},
    {"false_negative_ratio": 0.6},
    {"max_score": 0.2, "min_score": -0.5},
    {"metric": "l2", "absolute_margin": 1.0, "rank_min": 1},
    {"metric": "ip", "relative_margin": 0.1},
    {"exclude_same_label": False, "rank_min": 2},
]


@pytest.mark.parametrize("params", FILTER_CASES)
def test_labels_agree_with_brute_force(params):
    x, labels = _vectors()
    sel = HardNegatives(negatives=3, space="vectors", depth=4, max_depth=160, on_short="skip", **params)
    out = sel.select(Pool(len(x), labels=labels, vectors=x), SelectContext(seed=5))
    positives = [[p] for p in out.positives]
    ref = _reference(x, out.anchors, positives, np.arange(len(x)), labels, params)
    for i, a in enumerate(out.anchors):
        assert out.negatives[i].tolist() == ref[i][:3], f"anchor {a}"
        assert np.allclose(out.negative_scores[i], _score(params.get("metric", "cosine"), x[[a]], x[out.negatives[i]])[0], atol=1e-4)
    assert np.all(labels[out.anchors] == labels[out.positives])
    if params.get("exclude_same_label", True):
        assert np.all(labels[out.negatives] != labels[out.anchors][:, None]), "never an item of the anchor's label"
    assert np.all(out.negatives != out.positives[:, None]) and np.all(out.negatives != out.anchors[:, None])
    padded = HardNegatives(**{**sel.get_params(), "on_short": "pad"}).select(Pool(len(x), labels=labels, vectors=x), SelectContext(seed=5))
    assert np.array_equal(padded.anchors, np.arange(len(x))), "fraction 1: every item anchors (padding keeps the short ones)"
    every = _reference(x, padded.anchors, [[p] for p in padded.positives], np.arange(len(x)), labels, params)
    short = sum(len(r) < 3 for r in every)
    assert out.meta["short"] == out.meta["skipped_short"] == padded.meta["short"] == short and len(out) == len(x) - short


def _pairs_pool(n_queries=60, n_docs=200, d=8, seed=1, labels=False):
    """Queries ``0..q-1`` and documents ``q..q+n_docs-1``; each query has 1-3 positive documents."""
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, d)).astype(np.float32)
    rows = []
    for q in range(n_queries):
        for doc in rng.choice(n_docs, size=rng.integers(1, 4), replace=False):
            rows.append((q, n_queries + doc))
    pairs = np.array(rows, dtype=np.int64)
    first = {}
    for q, doc in rows:
        first.setdefault(q, doc)
    queries = np.stack([docs[first[q] - n_queries] + 0.6 * rng.normal(size=d) for q in range(n_queries)]).astype(np.float32)
    x = np.concatenate([queries, docs])
    arrays = {"vectors": x}
    if labels:
        arrays["labels"] = rng.integers(0, 5, size=len(x))
    return Pool(len(x), providers={"pairs": pairs_provider(pairs[:, 0], pairs[:, 1])}, **arrays), x, pairs


@pytest.mark.parametrize("params", [{}, {"relative_margin": 0.1, "rank_min": 1}, {"max_score": 0.5, "absolute_margin": 0.05}])
@pytest.mark.parametrize("with_labels", [False, True])
def test_pairs_agree_with_brute_force(params, with_labels):
    pool, x, pairs = _pairs_pool(labels=with_labels)
    labels = pool.labels if with_labels else None
    out = HardNegatives(negatives=4, space="vectors", depth=5, max_depth=200, **params).select(pool, SelectContext(seed=0))
    anchors = np.unique(pairs[:, 0])
    pos = [pairs[pairs[:, 0] == a, 1].tolist() for a in anchors]
    corpus = np.arange(len(anchors), len(x))
    ref = dict(zip(anchors.tolist(), _reference(x, anchors, pos, corpus, labels, params)))
    assert out.meta["positives"] == "pairs"
    kept = {a for a in anchors.tolist() if len(ref[a]) >= 4}
    assert sorted(set(zip(out.anchors.tolist(), out.positives.tolist()))) == sorted((a, p) for a, p in pairs.tolist() if a in kept), "one tuple per given pair"
    for a, p, row in zip(out.anchors.tolist(), out.positives.tolist(), out.negatives.tolist()):
        assert row == ref[a][:4]
        assert not set(row) & set(pos[list(anchors).index(a)]), "no given positive is a negative"
        assert set(row) <= set(corpus.tolist()), "negatives come from the documents, never from the queries"
        if with_labels:
            assert all(labels[n] != labels[a] for n in row)


def test_false_negative_guard_and_margins_hold_in_the_scores():
    x, labels = _vectors(seed=3)
    out = HardNegatives(negatives=2, space="v", absolute_margin=0.05, relative_margin=0.2, false_negative_ratio=0.7, max_score=0.6).select(
        Pool(len(x), labels=labels, v=x), SelectContext(seed=0)
    )
    pos = out.positive_scores[:, None].astype(np.float64)
    neg = out.negative_scores.astype(np.float64)
    assert np.all(neg <= pos - 0.05 + 1e-6) and np.all(neg <= pos - np.abs(pos) * 0.2 + 1e-6)
    assert np.all(neg <= 0.7 * pos + 1e-6) and np.all(neg <= 0.6 + 1e-6)
    assert np.all(np.diff(neg, axis=1) <= 0), "negatives best first"
    removed = out.meta["removed"]
    assert set(removed) == set(FILTERS) and removed["same_label"] > 0 and removed["absolute_margin"] + removed["relative_margin"] > 0
    search = out.meta["search"]  # how the neighbour search ran, for the manifest
    assert search["backend"] == "flat" and search["n"] == len(x) and search["sharded"] and search["ranks"] == 1 and search["searches"] >= 1


# ----------------------------------------------------------------------------------- sampling
def test_random_sampling_draws_within_the_window_deterministically():
    x, labels = _vectors()
    pool = Pool(len(x), labels=labels, vectors=x)
    params = dict(negatives=3, space="vectors", rank_max=10, sampling="random")
    a = HardNegatives(**params).select(pool, SelectContext(seed=0, epoch=1))
    again = HardNegatives(**params).select(Pool(len(x), labels=labels, vectors=x), SelectContext(seed=0, epoch=1))
    other = HardNegatives(**params).select(pool, SelectContext(seed=1, epoch=1))
    assert np.array_equal(a.items(), again.items()) and np.array_equal(a.negative_scores, again.negative_scores)
    assert not np.array_equal(a.negatives, other.negatives)
    window = _reference(x, a.anchors, [[p] for p in a.positives], np.arange(len(x)), labels, {"rank_max": 10})
    drawn = set()
    for i, row in enumerate(a.negatives.tolist()):
        assert set(row) <= set(window[i]) and len(set(row)) == 3
    for seed in range(40):
        r = HardNegatives(**params).select(pool, SelectContext(seed=seed))
        drawn |= {(int(r.anchors[0]), n) for n in r.negatives[0].tolist()} if r.anchors[0] == a.anchors[0] else set()
    assert len(drawn) >= 8, "over 40 seeds the draws of one anchor cover most of its 10-rank window"


# ----------------------------------------------------------------------------------- on_short and bad input
def _short_pool():
    x, labels = _vectors(n=80, seed=2)
    return Pool(len(x), labels=labels, vectors=x)


def test_on_short_error_says_how_many_were_found():
    with pytest.raises(ConfigError, match=r"selector\.on_short=error: \d+ of 80 anchors kept fewer than negatives=3") as err:
        HardNegatives(negatives=3, space="vectors", min_score=0.6, on_short="error").select(_short_pool(), SelectContext(seed=0))
    assert "\n" not in str(err.value) and "found" in str(err.value)


def test_on_short_skip_and_pad_are_counted():
    params = dict(negatives=3, space="vectors", min_score=0.6, depth=8, max_depth=16)
    skip = HardNegatives(**params, on_short="skip").select(_short_pool(), SelectContext(seed=0))
    pad = HardNegatives(**params, on_short="pad").select(_short_pool(), SelectContext(seed=0))
    assert skip.meta["short"] == pad.meta["short"] > 0
    assert skip.meta["skipped_short"] == skip.meta["short"] and len(skip) == 80 - skip.meta["short"]
    assert len(pad) == 80 and pad.meta["padded"] > 0 and pad.meta["skipped_short"] == 0
    labels = _short_pool().labels
    assert np.all(pad.negatives >= 0) and np.all(labels[pad.negatives] != labels[pad.anchors][:, None])
    assert all(len(set(r)) == 3 for r in pad.negatives.tolist()) and np.all(pad.negatives != pad.anchors[:, None])
    assert skip.meta["widened"] > 0 and skip.meta["depth_max"] == 16, "short anchors were searched again, up to max_depth"


def test_margins_that_exclude_everything_fail_in_one_line():
    with pytest.raises(ConfigError, match=r"selector\.on_short=skip: no anchor kept 3 negatives.*absolute_margin") as err:
        HardNegatives(negatives=3, space="vectors", absolute_margin=5.0).select(_short_pool(), SelectContext(seed=0))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"selector\.min_score"):
        HardNegatives(max_score=0.1, min_score=0.5).select(_short_pool(), SelectContext(seed=0))


def test_bad_vectors_and_missing_positives():
    x, labels = _vectors(n=40)
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ConfigError, match=r"selector\.space: 'vectors' vectors hold NaN.*row 7") as err:
        HardNegatives(space="vectors").select(Pool(40, labels=labels, vectors=bad), SelectContext(seed=0))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"selector\.space: .* must be 2-D"):
        HardNegatives(space="vectors").select(Pool(40, labels=labels, vectors=x[:, 0]), SelectContext(seed=0))
    with pytest.raises(ConfigError, match=r"selector\.positives=labels: no anchor has a positive"):
        HardNegatives(space="vectors").select(Pool(4, labels=np.arange(4), vectors=x[:4]), SelectContext(seed=0))
    with pytest.raises(ConfigError, match="'pairs'"):
        HardNegatives(space="vectors", positives="pairs").select(Pool(40, labels=labels, vectors=x), SelectContext(seed=0))
    with pytest.raises(ConfigError, match=r"selector\.positives=auto: this pool offers neither"):
        HardNegatives(space="vectors").select(Pool(40, vectors=x), SelectContext(seed=0))
    singles = np.concatenate([[100], labels[1:]])
    out = HardNegatives(space="vectors", negatives=1).select(Pool(40, labels=singles, vectors=x), SelectContext(seed=0))
    assert out.meta["skipped_no_positive"] == 1 and 0 not in out.anchors.tolist()
    from selectkit_plugins.hard_negatives import MiningSettings, mine
    from selectkit.neighbors import NeighborConfig

    with pytest.raises(ConfigError, match="anchors have 6 dimensions but the corpus has 5"):
        mine(x, x[:, :5], anchor_items=np.arange(40), corpus_items=np.arange(40), reference=np.zeros(40), positive_keys=np.zeros(0, np.int64),
             n_items=40, settings=MiningSettings(), seed=0, config=NeighborConfig(metric="cosine"))


# ----------------------------------------------------------------------------------- the pairs provider
def test_pairs_provider_maps_ids_to_pool_positions():
    provider = pairs_provider(np.array([10, 11, 12, 10]), np.array([20, 21, 99, 21]))
    got = provider(np.array([21, 10, 20, 11, 12]))
    assert got.tolist() == [[1, 2], [3, 0], [1, 0]], "pairs with both ends in the pool, in pool positions, in the given order"
    assert provider(np.zeros(0, np.int64)).shape == (0, 2)


def test_controller_offers_pairs_only_when_the_data_has_them():
    from selectkit.control import SelectionController
    from selectkit.pipeline import Pipeline, Stage

    pool, x, pairs = _pairs_pool()
    stage = Stage(HardNegatives(negatives=2, space="features"), schedule="once")
    ctl = SelectionController(Pipeline([stage], seed=0), None, lambda ids: x[ids], rows=len(x), pairs=(pairs[:, 0], pairs[:, 1]))
    tuples = ctl.tuples(0)
    assert tuples.shape[1] == 4 and set(map(tuple, tuples[:, :2].tolist())) == set(map(tuple, pairs.tolist()))
    bare = SelectionController(Pipeline([Stage(HardNegatives(space="features", positives="pairs"))], seed=0), None, lambda ids: x[ids], rows=len(x))
    with pytest.raises(ConfigError, match=r"needs 'pairs', which this run cannot provide") as err:
        bare.tuples(0)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------- in training
@pytest.fixture
def compose_cfg(tmp_path):
    """The training config composed as ``selectkit-train`` would (digits, the MLP, CPU), outputs in ``tmp_path``."""
    from selectkit.testing import compose_train_config

    return lambda *overrides: compose_train_config(tmp_path, *overrides)


def _setup(compose_cfg, *overrides):
    from selectkit.lightning import SelectionDataModule
    from selectkit.train import build_pipeline, build_source, loader_settings

    cfg = compose_cfg("task=contrastive", "selector=hard_negatives", "selector.space=features", *overrides)
    source = build_source(cfg)
    dm = SelectionDataModule(source, build_pipeline(cfg), **loader_settings(cfg))
    dm.setup()
    return dm, dm.train_dataloader()


def test_mined_tuples_stay_whole_in_batches_and_across_ranks(compose_cfg):
    from selectkit.sampler import TupleBatchSampler

    dm, loader = _setup(compose_cfg, "selector.negatives=2", "data.batch_size=60")
    tuples = dm.controller.tuples(0)
    labels = dm.train_ds.labels()
    assert np.all(labels[tuples[:, 2:]] != labels[tuples[:, :1]])
    loader.batch_sampler.set_epoch(0)
    seen = []
    for batch in loader:
        rows, mask = batch["index"].view(-1, 4).numpy(), batch["mask"].view(-1, 4).numpy()
        assert np.all(mask.all(axis=1) | ~mask.any(axis=1)), "a tuple is wholly real or wholly padding"
        seen.append(rows[mask[:, 0]])
    assert sorted(map(tuple, np.concatenate(seen).tolist())) == sorted(map(tuple, tuples.tolist()))
    shards = [TupleBatchSampler(dm.controller, 40, num_replicas=2, rank=r).shard(0) for r in range(2)]
    live = [set(map(tuple, s[0][s[1]].tolist())) for s in shards]
    assert not live[0] & live[1] and sorted(live[0] | live[1]) == sorted(map(tuple, tuples.tolist()))


def _mined(out):
    return {int(p.stem.split("_")[1]): np.load(p) for p in sorted((out / "selections").glob("epoch_*.npz"))}


@pytest.mark.slow
def test_dynamic_remining_refreshes_on_schedule_and_resumes_identically(compose_cfg, tmp_path):
    from selectkit.train import run

    common = ("task=contrastive", "selector=hard_negatives", "selector.negatives=2", "selector.schedule=epoch", "selector.every=2",
              "selector.fraction=0.5", "selector.sampling=random", "selector.rank_max=20", "optim.scheduler=null", "data.batch_size=96")
    full = tmp_path / "full"
    run(compose_cfg(*common, "trainer.max_epochs=4"), full)
    lines = [json.loads(l) for l in (full / "selections" / "manifest.jsonl").read_text().splitlines()]
    assert [bool(l["ran"]) for l in lines] == [True, False, True, False], "mined at epochs 0 and 2 only (every: 2)"
    meta = lines[2]["meta"]["hard_negatives"]
    assert meta["mined_epoch"] == 2 and meta["previous_epoch"] == 0 and meta["changed_since_previous"] > 0.5, "re-mined with the trained model"
    ref = _mined(full)
    assert np.array_equal(ref[0]["tuples"], ref[1]["tuples"]) and not np.array_equal(ref[1]["tuples"], ref[2]["tuples"])
    assert {"positive_scores", "negative_scores"} <= set(ref[2].files)

    first = tmp_path / "first"
    run(compose_cfg(*common, "trainer.max_epochs=2"), first)
    resumed = tmp_path / "resumed"
    run(compose_cfg(*common, "trainer.max_epochs=4", f"resume={first / 'checkpoints' / 'last.ckpt'}"), resumed)
    got = _mined(resumed)
    assert sorted(got) in ([1, 2, 3], [2, 3]), "the resumed run selects from the checkpoint's epoch on"
    for epoch in got:
        assert np.array_equal(got[epoch]["tuples"], ref[epoch]["tuples"]), f"epoch {epoch} differs after resume"
        assert np.allclose(got[epoch]["negative_scores"], ref[epoch]["negative_scores"])


def test_the_mined_set_is_the_selector_state():
    x, labels = _vectors(n=60)
    ids = np.arange(500, 560)
    sel = HardNegatives(negatives=2, space="vectors")
    out = sel.select(Pool(ids, labels=labels, vectors=x), SelectContext(seed=0, epoch=3))
    state = sel.state_dict()["state"]
    assert state["epoch"] == 3
    assert np.array_equal(state["anchors"], ids[out.anchors]) and np.array_equal(state["positives"], ids[out.positives])
    assert np.array_equal(state["negatives"], ids[out.negatives]), "the state holds the mined tuples in global ids"
    restored = HardNegatives(negatives=2, space="vectors")
    restored.load_state_dict(sel.state_dict())
    again = restored.select(Pool(ids, labels=labels, vectors=x), SelectContext(seed=0, epoch=5))
    assert again.meta["previous_epoch"] == 3 and again.meta["changed_since_previous"] == 0.0, "same vectors, same top negatives"
    moved = x + np.random.default_rng(1).normal(scale=0.5, size=x.shape).astype(np.float32)
    later = restored.select(Pool(ids, labels=labels, vectors=moved), SelectContext(seed=0, epoch=7))
    assert later.meta["previous_epoch"] == 5 and later.meta["changed_since_previous"] > 0.3, "moved vectors, refreshed negatives"


@pytest.mark.ddp
def test_the_same_tuples_when_a_rank_holds_no_rows():
    """160 items in blocks of 64 on 4 ranks: the last rank owns no block and mines for no anchor, but
    takes part in every search; padding fetches rows from the ranks that hold them."""
    from selectkit.testing import check_selector_worlds

    x, labels = _vectors()
    params = {"negatives": 3, "space": "vectors", "fraction": 0.6, "depth": 4, "max_depth": 8, "min_score": 0.3, "sampling": "random", "on_short": "pad"}
    out = check_selector_worlds(HardNegatives, params, {"vectors": x, "labels": labels}, worlds=(4,), block_rows=64, seed=2)
    assert out["negatives"].shape == (96, 3)
