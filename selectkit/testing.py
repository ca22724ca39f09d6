"""The shared test kit every selector plugin runs, built-in or external.

Usage in a plugin's tests::

    from selectkit.testing import check_selector

    def test_contract():
        check_selector(lambda **kw: MySelector(k=3, **kw), bad_params={"k": [0, -1, "x"]})

`check_selector` asserts the contract: output invariants, the same selection for the same
(seed, stage, epoch) from fresh instances, a state round-trip, parameters validated at selection time
(never in the constructor) with errors that name the setting, refusal of an empty pool, and refusal of a
pool that lacks what the selector declares it requires.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Selection
from selectkit.selector import Pool, SelectContext, Selector


def make_pool(n: int = 240, d: int = 8, classes: int = 3, seed: int = 0, minority: float | None = None) -> Pool:
    """A synthetic pool with labels, features, embeddings, class probabilities and losses.

    ``minority`` makes class 0 that share of the pool (an imbalanced pool).
    """
    rng = np.random.default_rng([seed, 0x7E57])
    if minority is None:
        labels = np.arange(n) % classes
    else:
        n_min = max(2, int(round(minority * n)))
        labels = np.concatenate([np.zeros(n_min, dtype=np.int64), 1 + np.arange(n - n_min) % max(1, classes - 1)])
    labels = rng.permutation(labels).astype(np.int64)
    centers = rng.normal(scale=3.0, size=(classes, d))
    features = (centers[labels] + rng.normal(size=(n, d))).astype(np.float32)
    logits = rng.normal(size=(n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Pool(
        np.arange(n, dtype=np.int64),
        labels=labels,
        features=features,
        embeddings=features.copy(),
        probs=probs.astype(np.float32),
        losses=rng.exponential(size=n).astype(np.float32),
    )


def _same(a: Selection, b: Selection) -> bool:
    if not np.array_equal(a.indices, b.indices):
        return False
    if (a.weights is None) != (b.weights is None):
        return False
    if a.weights is not None and not np.array_equal(a.weights, b.weights):
        return False
    if a.num_synthetic != b.num_synthetic:
        return False
    if a.synthetic is not None and not np.array_equal(a.synthetic.features, b.synthetic.features):
        return False
    return True


def check_selector(
    factory: Callable[..., Selector],
    pool_factory: Callable[[], Pool] = make_pool,
    *,
    bad_params: Mapping[str, Iterable[Any]] | None = None,
    epochs: Iterable[int] = (0, 1, 2),
    stochastic: bool | None = None,
) -> None:
    """Assert the selector contract; raises ``AssertionError`` naming the broken rule.

    Args:
        factory: builds a fresh selector; called with keyword overrides of bad parameter values.
        pool_factory: builds the pool to select from (fresh for each call).
        bad_params: for each parameter, values that must be rejected at selection time.
        epochs: epochs at which to select.
        stochastic: ``True`` asserts that two seeds give different selections at some epoch;
            ``None`` skips that check.
    """
    epochs = list(epochs)
    sel = factory()
    assert isinstance(sel, Selector), f"factory returned {type(sel).__name__}, not a Selector"
    assert sel.name, "a selector needs a registry `name`"
    params = sel.get_params()
    assert set(params) == set(type(sel)._param_names()), "get_params must return every constructor parameter"
    for key in type(sel).parameter_constraints:
        assert key in params, f"parameter_constraints names {key!r}, which the constructor does not take"

    pool = pool_factory()
    runs = {}
    for epoch in epochs:
        ctx = SelectContext(seed=0, epoch=epoch, stage=0)
        out = sel.select(pool, ctx)
        out.check(len(pool))
        assert out.indices.dtype == np.int64, "indices must be int64"
        runs[epoch] = out

    fresh = factory()
    for epoch in reversed(epochs):
        again = fresh.select(pool_factory(), SelectContext(seed=0, epoch=epoch, stage=0))
        assert _same(runs[epoch], again), f"epoch {epoch}: a fresh instance with the same seed selected differently"

    restored = factory()
    restored.load_state_dict(sel.state_dict())
    later = max(epochs) + 1
    assert _same(
        sel.select(pool_factory(), SelectContext(seed=0, epoch=later)),
        restored.select(pool_factory(), SelectContext(seed=0, epoch=later)),
    ), "a selector restored from state_dict selects differently"

    if stochastic:
        other = factory()
        differs = any(
            not _same(runs[e], other.select(pool_factory(), SelectContext(seed=1, epoch=e))) for e in epochs
        )
        assert differs, "seed 1 selected exactly what seed 0 did at every epoch"

    empty = Pool(np.zeros(0, dtype=np.int64), labels=np.zeros(0, dtype=np.int64), features=np.zeros((0, 8), np.float32))
    try:
        factory().select(empty, SelectContext(seed=0))
    except ConfigError:
        pass
    else:
        raise AssertionError("an empty pool must raise ConfigError")

    needs = sel.requires
    if needs:
        bare = Pool(np.arange(10, dtype=np.int64))
        try:
            factory().select(bare, SelectContext(seed=0))
        except ConfigError as err:
            assert any(n in str(err) for n in needs), f"error for missing data should name it: {err}"
        else:
            raise AssertionError(f"a pool without {sorted(needs)} must raise ConfigError")

    for key, values in (bad_params or {}).items():
        for value in values:
            obj = factory(**{key: value})
            try:
                obj.select(pool_factory(), SelectContext(seed=0))
            except ConfigError as err:
                assert f"{obj.config_path}.{key}" in str(err), f"error for {key}={value!r} must name the setting: {err}"
                assert "\n" not in str(err), "errors must fit on one line"
            else:
                raise AssertionError(f"{key}={value!r} must be rejected with ConfigError")
