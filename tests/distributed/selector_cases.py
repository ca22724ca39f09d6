"""Every built-in selector over one pool sharded on the ranks of a world: the `selectors` scenario.

The pool (600 items in blocks of 64, so every rank of a world of 4 owns rows) offers every provider a
run offers, precomputed from one seed: features, embeddings, labels (imbalanced, for the SMOTE family),
probs, mc_probs, losses, grad_embeddings, and (query, document) pairs; acquisitions choose from the
unlabelled items beside a labelled set. Each case's result is saved whole, so the test compares world 2
and 4 against world 1.
"""

from __future__ import annotations

import numpy as np

N, D, C, BLOCK_ROWS = 600, 6, 3, 64
LABELLED = 40

#: (case name, selector name, parameters, epoch, acquisition)
CASES = [
    ("rs2", "rs2", {"fraction": 0.2}, 1, False),
    ("rs2_replacement", "rs2", {"fraction": 0.2, "replacement": True}, 1, False),
    ("random", "random", {"fraction": 0.2}, 0, False),
    ("random_balanced", "random", {"fraction": 0.2, "class_balanced": True}, 0, False),
    ("full", "full", {}, 0, False),
    ("leverage_pivotal", "leverage", {"budget": 60}, 0, False),
    ("leverage_bernoulli", "leverage", {"budget": 60, "scheme": "bernoulli"}, 0, False),
    ("leverage_replacement", "leverage", {"budget": 60, "scheme": "replacement"}, 0, False),
    ("sensitivity", "sensitivity", {"size": 60, "k": 6, "embedding": "features", "cluster_term": "size"}, 0, False),
    ("sensitivity_loss", "sensitivity", {"size": 60, "k": 6, "embedding": "model"}, 0, False),
    ("sensitivity_replacement", "sensitivity", {"size": 60, "k": 6, "embedding": "features", "by_label": False, "scheme": "replacement", "lipschitz": 0.5}, 1, False),
    ("sensitivity_encoder", "sensitivity", {"size": 60, "k": 6, "embedding": "encoder", "cluster_term": "size", "max_points_per_centroid": 20, "neighbors": {"metric": "cosine"},
                                            "encoder": {"_target_": "selectkit_plugins.sensitivity.RandomProjection", "out_features": 3}}, 0, False),
    ("smote", "smote", {}, 0, False),
    ("borderline_smote", "borderline_smote", {}, 0, False),
    ("adasyn", "adasyn", {}, 0, False),
    ("smote_sharded", "smote", {"gather_below": 50}, 0, False),
    ("borderline_smote_sharded", "borderline_smote", {"gather_below": 0, "m_neighbors": 6}, 0, False),
    ("borderline_smote_2_sharded", "borderline_smote", {"gather_below": 0, "kind": "borderline-2"}, 0, False),
    ("adasyn_sharded", "adasyn", {"gather_below": 0}, 0, False),
    ("random_over", "random_over", {}, 0, False),
    ("random_under", "random_under", {}, 0, False),
    ("random_tuples", "random_tuples", {"fraction": 0.3, "negatives": 2}, 1, False),
    ("hard_negatives", "hard_negatives", {"negatives": 2, "fraction": 0.3, "depth": 16, "positives": "labels"}, 0, False),
    ("hard_negatives_pad", "hard_negatives", {"negatives": 3, "fraction": 0.5, "depth": 4, "max_depth": 8, "positives": "labels", "space": "features",
                                              "metric": "l2", "exclude_same_label": False, "min_score": -2.0, "sampling": "random", "rank_max": 6,
                                              "on_short": "pad"}, 0, False),
    ("hard_negatives_pairs", "hard_negatives", {"negatives": 2, "positives": "pairs", "depth": 8, "relative_margin": 0.05, "rank_min": 1}, 0, False),
    ("least_confidence", "least_confidence", {"budget": 25}, 0, True),
    ("margin", "margin", {"budget": 25}, 0, True),
    ("entropy_power", "entropy", {"budget": 25, "stochastic": "power"}, 0, True),
    ("margin_softmax", "margin", {"budget": 25, "stochastic": "softmax", "temperature": 0.5}, 0, True),
    ("least_confidence_softrank", "least_confidence", {"budget": 25, "stochastic": "softrank"}, 0, True),
    ("bald", "bald", {"budget": 25, "passes": 4}, 0, True),
    ("stochastic_losses", "stochastic", {"budget": 25, "score": "losses"}, 0, True),
    ("kcenter", "kcenter", {"budget": 12}, 0, True),
    ("badge", "badge", {"budget": 12}, 0, True),
    ("typiclust", "typiclust", {"budget": 12, "space": "features", "n_iter": 10}, 0, True),
    ("random_acquisition", "random", {"budget": 12}, 0, True),
]


def arrays() -> dict[str, np.ndarray]:
    """The providers' values for every item, the same at every world size."""
    rng = np.random.default_rng(5)
    labels = np.zeros(N, dtype=np.int64)
    labels[N - 120 :] = 1
    labels[N - 40 :] = 2
    centres = rng.standard_normal((C, D)) * 2.5
    features = (centres[labels] + rng.standard_normal((N, D))).astype(np.float32)
    # integer-valued embeddings: equal distances (and so ties) really occur
    embeddings = np.round(features * 2).astype(np.float32)
    logits = rng.standard_normal((N, C)) * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mc = rng.dirichlet(np.ones(C), size=(N, 4)) * 0.5 + probs[:, None, :] * 0.5
    return {
        "features": features,
        "embeddings": embeddings,
        "labels": labels,
        "probs": probs.astype(np.float32),
        "mc_probs": mc.astype(np.float32),
        "losses": rng.exponential(size=N).astype(np.float32),
        "grad_embeddings": rng.standard_normal((N, C * 4)).astype(np.float32),
    }


def make_pool(comm, acquisition: bool):
    """The pool of a case: every item, or the unlabelled items beside the labelled set."""
    from selectkit.providers import pairs_provider
    from selectkit.selector import Pool

    values = arrays()

    def provider(name):
        return lambda ids, **_: values[name][np.asarray(ids, dtype=np.int64)]

    providers = {name: provider(name) for name in values}
    if not acquisition:
        # (query, document) pairs for hard_negatives' positives=pairs: queries 0..199, documents from 200 on
        rng = np.random.default_rng(7)
        queries = np.repeat(np.arange(200), rng.integers(1, 3, size=200))
        providers["pairs"] = pairs_provider(queries, rng.integers(200, N, size=queries.size))
        return Pool(N, providers=providers, comm=comm, block_rows=BLOCK_ROWS, memory_cap_gb=1.0)
    order = np.random.default_rng(6).permutation(N)
    labelled, unlabelled = np.sort(order[:LABELLED]), np.sort(order[LABELLED:])
    return Pool(unlabelled, providers=providers, comm=comm, block_rows=BLOCK_ROWS, memory_cap_gb=1.0, labelled=Pool(labelled, providers=providers))


def selectors(comm, only: list | None = None, **_: object) -> dict:
    """Run every case (or those named in ``only``); a case that raises records its error instead."""
    from selectkit import registry
    from selectkit.selector import SelectContext
    from selectkit.worlds import result_arrays

    out: dict = {}
    for case, name, params, epoch, acquisition in CASES:
        if only and case not in only:
            continue
        try:
            sel = registry.create(name, config_path=f"case.{case}", **params)
            result = sel.select(make_pool(comm, acquisition), SelectContext(seed=3, epoch=epoch, stage=0, round=1 if acquisition else 0))
            for key, value in result_arrays(result).items():
                out[f"{case}:{key}"] = value
        except Exception as err:  # noqa: BLE001 - recorded for the test to show
            out[f"{case}:error"] = np.array([f"{type(err).__name__}: {err}"])
    return out
