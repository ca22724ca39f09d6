"""The shared test kit every selector plugin runs, built-in or external.

Usage in a plugin's tests::

    from selectkit.testing import check_selector

    def test_contract():
        check_selector(lambda **kw: MySelector(k=3, **kw), bad_params={"k": [0, -1, "x"]})

`check_selector` asserts the contract for every result kind (`Selection`, `Acquisition`, `Tuples`):
output invariants, the same result for the same (seed, stage, epoch) from fresh instances, a state
round-trip through a real checkpoint (and refusal of a checkpoint saved with other parameters or by
another selector), parameters validated at selection time (never in the constructor) with errors that
name the setting, refusal of an empty pool, and refusal of a pool that lacks what the selector declares
it requires. Every ``select`` it makes, failed ones included, must leave the process-wide settings of
`selectkit.threads.snapshot` (torch's thread counts and modes, BLAS and OpenMP threads, numba's,
thread and allocator environment variables) as it found them: selectors run one after another in a
process, and a setting one of them leaves behind changes how fast, or how, the next one and the
training after it run. `make_pool` offers exactly the providers a real run offers, computed by the
same code.
Data sources run `check_source` (and any `BatchDataset` `check_batch_dataset`), from `selectkit.data.checks`.
`check_selector_worlds` (from `selectkit.worlds`) runs a selector on 1, 2 and 4 gloo ranks over one
sharded pool and asserts the same result at every world size.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from selectkit.data.checks import check_batch_dataset, check_source  # noqa: F401 (the data sources' shared checks)
from selectkit.errors import ConfigError
from selectkit.selection import Acquisition
from selectkit.worlds import check_selector_worlds  # noqa: F401 (the world-size check)
from selectkit.selector import Pool, SelectContext, Selector


def make_pool(n: int = 240, d: int = 8, classes: int = 3, seed: int = 0, minority: float | None = None, labelled: int = 0) -> Pool:
    """A pool that offers exactly what a real run offers, computed by the same code.

    Rows are Gaussian clusters (one per class) held in an in-memory `selectkit.data.ArrayDataset`; the
    providers are those of a run: ``labels``, ``features`` and the model outputs of a small MLP with
    dropout under the classification task (``embeddings``, ``probs``, ``mc_probs`` with ``passes``,
    ``losses``, ``grad_embeddings``), through `selectkit.providers.PoolScorer`. ``minority`` makes
    class 0 that share of the pool (an imbalanced pool). ``labelled > 0`` makes a round loop's
    acquisition pool: ``n + labelled`` rows of which ``labelled`` random ones form ``pool.labelled``
    and the pool holds the other ``n`` (their global ids, sorted), with the same providers.
    """
    import torch

    from selectkit.data import ArrayDataset
    from selectkit.models import MLP, ModelAdapter
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.tasks import Classification

    rng = np.random.default_rng([seed, 0x7E57])
    unlabelled = n
    n = n + int(labelled)
    if minority is None:
        labels = np.arange(n) % classes
    else:
        n_min = max(2, int(round(minority * n)))
        labels = np.concatenate([np.zeros(n_min, dtype=np.int64), 1 + np.arange(n - n_min) % max(1, classes - 1)])
    labels = rng.permutation(labels).astype(np.int64)
    centers = rng.normal(scale=3.0, size=(classes, d))
    features = (centers[labels] + rng.normal(size=(n, d))).astype(np.float32)
    dataset = ArrayDataset(torch.from_numpy(features), torch.from_numpy(labels))
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
        model = MLP(in_features=d, hidden=[16], num_classes=classes, dropout=0.2)
    task = Classification()
    task.setup({"num_classes": classes, "input_shape": (d,)})
    scorer = PoolScorer(ModelAdapter(model, num_classes=classes), dataset, batch_size=64, seed=seed)
    providers = {"labels": lambda ids: labels[ids], "features": lambda ids: features[ids], **model_providers(scorer, task)}
    if not labelled:
        return Pool(n, providers=providers)
    known = np.sort(np.random.default_rng([seed, 0x4C42]).choice(n, size=int(labelled), replace=False)).astype(np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), known)
    assert rest.shape[0] == unlabelled

    def hidden(ids: np.ndarray) -> np.ndarray:
        raise ConfigError(f"labels: {ids.shape[0]} of the {ids.shape[0]} items asked for are unlabelled; only labelled items have labels")

    return Pool(rest, providers={**providers, "labels": hidden}, labelled=Pool(known, providers=providers))


def _same(a: Any, b: Any) -> bool:
    """Whether two results are equal in kind and in every array they hold."""
    if type(a) is not type(b):
        return False
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "meta":
            continue
        if dataclasses.is_dataclass(x) or dataclasses.is_dataclass(y):
            if (x is None) != (y is None) or (x is not None and not _same(x, y)):
                return False
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


@contextlib.contextmanager
def keeps_process_settings(what: str) -> Iterator[None]:
    """Assert that the block leaves `selectkit.threads.snapshot` as it found it (also when it raises);
    the ``AssertionError`` names ``what`` and every setting that changed."""
    from selectkit.threads import changes, snapshot

    before = snapshot()
    try:
        yield
    finally:
        changed = changes(before, snapshot())
        if changed:
            raise AssertionError(f"{what} left process-wide settings changed ({'; '.join(changed)}); a selector must restore what it sets")


def _select(sel: Selector, pool: Pool, ctx: SelectContext) -> Any:
    """``sel.select(pool, ctx)``, asserting that it keeps the process-wide settings."""
    with keeps_process_settings(f"{type(sel).__name__}.select"):
        return sel.select(pool, ctx)


def _check_acquisition(sel: Selector, out: Acquisition) -> None:
    """An acquisition holds at most its ``budget`` items, best first by score."""
    budget = sel.get_params().get("budget")
    if isinstance(budget, int) and not isinstance(budget, bool):
        assert len(out) <= budget, f"acquired {len(out)} items with budget={budget}"
    if out.scores is not None and out.scores.size > 1:
        assert np.all(np.diff(out.scores) <= 0), "an Acquisition lists its items best first (scores non-increasing)"


def _through_checkpoint(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` saved and loaded the way a Lightning checkpoint carries it (``weights_only`` loading)."""
    import io

    import torch

    from selectkit.lightning import from_checkpoint, to_checkpoint

    buffer = io.BytesIO()
    torch.save(to_checkpoint(dict(state)), buffer)
    buffer.seek(0)
    return from_checkpoint(torch.load(buffer, weights_only=True))


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
        out = _select(sel, pool, ctx)
        assert isinstance(out, sel.returns), f"select returned {type(out).__name__}, the selector declares {sel.returns.__name__}"
        out.check(len(pool))
        if isinstance(out, Acquisition):
            _check_acquisition(sel, out)
        runs[epoch] = out
    for r in (1, 2):
        a = _select(factory(), pool_factory(), SelectContext(seed=0, round=r))
        b = _select(factory(), pool_factory(), SelectContext(seed=0, round=r))
        assert _same(a, b), f"round {r}: the same seed and round selected differently"

    fresh = factory()
    for epoch in reversed(epochs):
        again = _select(fresh, pool_factory(), SelectContext(seed=0, epoch=epoch, stage=0))
        assert _same(runs[epoch], again), f"epoch {epoch}: a fresh instance with the same seed selected differently"

    restored = factory()
    restored.load_state_dict(_through_checkpoint(sel.state_dict()))
    later = max(epochs) + 1
    assert _same(
        _select(sel, pool_factory(), SelectContext(seed=0, epoch=later)),
        _select(restored, pool_factory(), SelectContext(seed=0, epoch=later)),
    ), "a selector restored from a checkpoint selects differently"
    for key in params:
        tampered = _through_checkpoint(sel.state_dict())
        tampered["params"] = {**tampered["params"], key: ("<changed>", tampered["params"][key])}
        try:
            factory().load_state_dict(tampered)
        except ConfigError as err:
            assert key in str(err), f"refusing a checkpoint with another {key} should name it: {err}"
        else:
            raise AssertionError(f"a checkpoint saved with another {key} must be refused")
    other_name = _through_checkpoint(sel.state_dict())
    other_name["name"] = f"not-{sel.name}"
    try:
        factory().load_state_dict(other_name)
    except ConfigError:
        pass
    else:
        raise AssertionError("a checkpoint of another selector must be refused")

    if stochastic:
        other = factory()
        differs = any(
            not _same(runs[e], _select(other, pool_factory(), SelectContext(seed=1, epoch=e))) for e in epochs
        )
        assert differs, "seed 1 selected exactly what seed 0 did at every epoch"

    empty = Pool(np.zeros(0, dtype=np.int64), providers={name: (lambda ids, **kw: np.zeros((0, 8), np.float32)) for name in pool.available()})
    try:
        _select(factory(), empty, SelectContext(seed=0))
    except ConfigError:
        pass
    else:
        raise AssertionError("an empty pool must raise ConfigError")

    needs = sel.requires
    if needs:
        bare = Pool(np.arange(10, dtype=np.int64))
        try:
            _select(factory(), bare, SelectContext(seed=0))
        except ConfigError as err:
            assert any(n in str(err) for n in needs), f"error for missing data should name it: {err}"
        else:
            raise AssertionError(f"a pool without {sorted(needs)} must raise ConfigError")

    for key, values in (bad_params or {}).items():
        for value in values:
            obj = factory(**{key: value})
            try:
                _select(obj, pool_factory(), SelectContext(seed=0))
            except ConfigError as err:
                assert f"{obj.config_path}.{key}" in str(err), f"error for {key}={value!r} must name the setting: {err}"
                assert "\n" not in str(err), "errors must fit on one line"
            else:
                raise AssertionError(f"{key}={value!r} must be rejected with ConfigError")


def check_selector_config(name: str, yaml_path: str):
    """Assert that a selector's YAML composes with its generated schema and reaches the selector
    unchanged; returns the selector (see `selectkit.schema.check_selector_config`)."""
    from selectkit.schema import check_selector_config as check

    return check(name, yaml_path)


#: Overrides of `compose_train_config`'s ``fast`` mode: digits, the MLP, 3 epochs, CPU, quiet.
FAST_OVERRIDES = (
    "data=digits",
    "model=mlp",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
)


def compose_train_config(output_dir: Any, *overrides: str, fast: bool = True):
    """selectkit's training config composed as ``selectkit-train`` would, with outputs under
    ``output_dir``; ``fast`` first applies `FAST_OVERRIDES`. For plugin tests that train end to end
    (pass the result to `selectkit.train.run`)."""
    from pathlib import Path

    from hydra import compose, initialize_config_module

    base = (list(FAST_OVERRIDES) if fast else []) + [f"paths.output_dir={output_dir}", f"paths.data_dir={Path(output_dir) / 'data'}"]
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=base + list(overrides))
