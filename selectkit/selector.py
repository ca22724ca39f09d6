"""The `Selector` base class, the `Pool` it selects from and the `SelectContext` that seeds it.

A plugin subclasses `Selector`, declares its parameters in a keyword-only ``__init__`` that only stores
them, declares the rules each parameter must follow in ``parameter_constraints``, declares which named
providers it reads in ``requires`` (with their parameters), the kind of result it returns in ``returns``,
and implements ``_select``. The public `Selector.select` validates parameters and input, calls
``_select`` with a context whose ``rng`` is derived from (seed, stage, epoch, round), and checks the result.
A plugin that must act during training (not only choose what to train on) returns a `TrainingHook`
from `Selector.training_hook`.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from selectkit.errors import ConfigError, SelectionError
from selectkit.pool import RELATIONS, Pool, Reader
from selectkit.selection import Selection


@dataclass(frozen=True)
class SelectContext:
    """Where in training a selection happens: the source of all randomness.

    ``stage`` is the stage's position in its pipeline, ``epoch`` the training epoch (within the round),
    ``round`` the active-learning round (0 outside round loops).
    """

    seed: int
    epoch: int = 0
    stage: int = 0
    round: int = 0

    def rng(self, *salt: int, per_epoch: bool = True) -> np.random.Generator:
        """A generator determined by (seed, stage, epoch, round, *salt) alone: never by rank or time.

        ``per_epoch=False`` leaves the epoch out, for draws that must stay the same across epochs (a
        static subset, a permutation walked over several epochs).
        """
        epoch = [self.epoch] if per_epoch else []
        return np.random.default_rng([self.seed, self.stage, self.round, *epoch, *salt])

    def key(self, *salt: int, per_epoch: bool = True) -> tuple[int, ...]:
        """The key of per-item draws (`selectkit.distributed.keyed_uniform`, ``keyed_gumbel``): an item's
        draw depends on (seed, stage, round, epoch, *salt) and its pool position alone, never on which
        rank holds it, so a sharded selector draws alike at every world size."""
        epoch = (self.epoch,) if per_epoch else ()
        return (int(self.seed), int(self.stage), int(self.round), *(int(e) for e in epoch), *(int(x) for x in salt))


def requirement_map(requires: Any) -> dict[str, dict[str, Any]]:
    """``requires`` as ``{provider name: parameters}``; a set or list of names means no parameters."""
    if isinstance(requires, Mapping):
        return {str(k): dict(v or {}) for k, v in requires.items()}
    return {str(k): {} for k in requires}


# ---------------------------------------------------------------------------------------------------
# parameter rules, declared once per selector and checked at selection time


class Constraint:
    """A rule for one parameter; `describe` reads as the end of 'must be ...'."""

    def ok(self, value: Any) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """A real (or, with ``integer=True``, integral) number within bounds."""

    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True
    integer: bool = False

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not np.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_closed)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_closed)):
            return False
        return True

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{kind} in {'[' if self.low_closed else '('}{lo}, {hi}{']' if self.high_closed else ')'}"


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed set of values."""

    choices: tuple[Any, ...]

    def ok(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)


@dataclass(frozen=True)
class Boolean(Constraint):
    """``true`` or ``false``."""

    def ok(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class AnyOf(Constraint):
    """Any of several rules (e.g. a number or null)."""

    options: tuple[Constraint, ...]

    def ok(self, value: Any) -> bool:
        return any(o.ok(value) for o in self.options)

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


@dataclass(frozen=True)
class IsNone(Constraint):
    """``null``."""

    def ok(self, value: Any) -> bool:
        return value is None

    def describe(self) -> str:
        return "null"


@dataclass(frozen=True)
class Check(Constraint):
    """A rule given as a predicate and its description."""

    predicate: Callable[[Any], bool]
    text: str

    def ok(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except Exception:
            return False

    def describe(self) -> str:
        return self.text


# ---------------------------------------------------------------------------------------------------


class Selector(abc.ABC):
    """Base class of every selector, built-in or external.

    Class attributes a plugin sets:
        name: the registry name (also the entry-point name).
        requires: the named providers ``_select`` reads: a set of names, or a mapping from name to the
            provider's parameters (e.g. ``{"mc_probs": {"passes": 20}}``); may be a property of the
            instance. Providers: ``labels``, ``features``, ``embeddings``, ``probs``, ``mc_probs``
            (``passes``), ``losses``, ``grad_embeddings``, and ``pairs`` where the data gives
            (anchor, positive) pairs (see `selectkit.providers`).
        returns: the result kind, `Selection` (default), `selectkit.Acquisition` or `selectkit.Tuples`.
        parameter_constraints: one `Constraint` per constructor parameter.
        default_schedule: the schedule of its stage when the config does not say (``epoch`` or ``once``).
        creates_samples: whether the selector may return synthetic samples.
        random_order: whether its indices come in uniformly random order (the sampler then skips its
            own shuffle).
        sharded: whether ``_select`` reads its per-item data by shard (``pool.local``) and combines the
            shards through the collectives of ``pool.collectives()``, so that no rank holds a whole
            ``[n, d]`` array. A selector that leaves it False reads whole arrays (``pool.get``), which
            over several ranks are gathered, under ``providers.memory_cap_gb``. Either way the result
            must not depend on the world size.
        gathers: the providers a sharded selector still reads whole (``pool.get``), e.g. a score
            vector it must rank globally.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[Any] = frozenset()
    returns: ClassVar[type] = Selection
    parameter_constraints: ClassVar[dict[str, Constraint]] = {}
    default_schedule: ClassVar[str] = "epoch"
    creates_samples: ClassVar[bool] = False
    random_order: ClassVar[bool] = False
    sharded: ClassVar[bool] = False
    gathers: ClassVar[frozenset[str]] = frozenset()

    #: config path used in error messages; the pipeline sets it (e.g. ``pipeline.stages.1.selector``).
    config_path: str = "selector"

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, read back from the attributes of the same name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def check_params(self) -> None:
        """Raise `ConfigError` naming the setting for the first parameter that breaks its rule."""
        unknown = set(self.parameter_constraints) - set(self._param_names())
        if unknown:
            raise TypeError(f"{type(self).__name__}.parameter_constraints names unknown parameters {unknown}")
        for key, rule in self.parameter_constraints.items():
            value = getattr(self, key)
            if not rule.ok(value):
                raise ConfigError(f"{self.config_path}.{key} must be {rule.describe()}, got {value!r}")
        self._check_params_jointly()

    def _check_params_jointly(self) -> None:
        """Override for rules that involve several parameters; raise `ConfigError` via `param_error`."""

    def param_error(self, key: str, message: str) -> ConfigError:
        """A `ConfigError` whose message starts with this selector's full setting path."""
        return ConfigError(f"{self.config_path}.{key} {message}")

    # ------------------------------------------------------------------ selection
    def requirements(self) -> dict[str, dict[str, Any]]:
        """``requires`` as ``{provider name: parameters}``."""
        return requirement_map(self.requires)

    def select(self, pool: Pool, ctx: SelectContext):
        """Validate parameters and input, run ``_select`` and check its output against the pool."""
        self.check_params()
        if len(pool) == 0:
            raise ConfigError(f"{self.config_path}: the pool is empty; nothing to select from (check data.* and earlier stages)")
        for need in self.requirements():
            if not pool.has(need):
                raise ConfigError(f"{self.config_path} ({self.name}) needs {need!r}, which this run cannot provide")
        pool.reader = Reader(self.config_path, self.name, bool(self.sharded), frozenset(self.gathers))
        try:
            result = self._select(pool, ctx)
        finally:
            pool.reader = None
        kind = self.returns
        if not isinstance(result, kind):
            raise SelectionError(f"{type(self).__name__}._select returned {type(result).__name__}, not {kind.__name__}")
        if getattr(result, "synthetic", None) is not None and not self.creates_samples:
            raise SelectionError(f"{type(self).__name__} returned synthetic samples but creates_samples is False")
        return result.check(len(pool))

    @abc.abstractmethod
    def _select(self, pool: Pool, ctx: SelectContext):
        """Choose from ``pool`` and return a ``returns`` result; every random draw comes from ``ctx.rng``."""

    def check_model(self, adapter: Any, batch: Mapping[str, Any]) -> None:
        """Before training, refuse a model this selector cannot work with, in a `ConfigError` naming the
        setting (default: accept). ``adapter`` is the run's `selectkit.models.ModelAdapter`, ``batch`` a
        few real training rows (``gather`` of the training set); the core calls it in eval mode without
        gradients, for every stage, before the first epoch."""

    def training_hook(self) -> Any:
        """A `selectkit.hooks.TrainingHook` that brings this selector's results into training, or None.

        Called once the selector has run (so a hook may depend on what it created, e.g. SMOTE's samples
        in embedding space); the core offers every hook the training dataset and each training batch.
        """
        return None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Parameters and any state carried between selections (override `_extra_state`)."""
        return {"name": self.name, "params": self.get_params(), "state": self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict`; refuses a state saved by a different selector or parameters."""
        if state.get("name") != self.name:
            raise ConfigError(f"{self.config_path}: checkpoint holds selector {state.get('name')!r}, config has {self.name!r}")
        saved, mine = dict(state.get("params", {})), self.get_params()
        if saved != mine:
            diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            raise ConfigError(f"{self.config_path}: parameters {diff} differ from the checkpoint's; resume with the same settings")
        self._load_extra_state(state.get("state", {}))

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class FractionSelector(Selector):
    """Base of selectors that keep ``fraction`` of the pool, optionally split evenly over classes.

    Subclasses store ``fraction`` and ``class_balanced``; labels are required only when balancing.
    """

    fraction: float
    class_balanced: bool

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"labels"}) if self.class_balanced else frozenset()
