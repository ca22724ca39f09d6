"""Typed selector configs generated from selector signatures, and one-line config errors.

Every selector gets a dataclass schema built from its keyword-only ``__init__``: one field per parameter
(type from the annotation, default from the signature) plus the stage fields ``name``, ``schedule``,
``every`` and ``start_epoch``. `register_schemas` makes them available in Hydra's ConfigStore as
``schema/selector/<name>``, built on first use, so a selector YAML attaches its schema explicitly::

    # selector/rs2.yaml
    defaults:
      - /schema/selector/rs2@_here_
      - _self_
    fraction: 0.1

A wrong type or an unknown key then fails when the config is composed. Pipeline stages, which name
their selector in a value, are typed by `validate_stage`. `precheck` composes the training config from a
command line and turns every composition error into one `ConfigError` line that names the setting.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import types
import typing
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from selectkit.errors import ConfigError

#: ConfigStore group holding one schema per installed selector.
SCHEMA_GROUP = "schema/selector"
#: Fields every selector config carries besides the selector's own parameters.
STAGE_KEYS = ("name", "schedule", "every", "start_epoch")
#: Config package ``precheck`` composes, and its primary config.
CONFIG_MODULE = "selectkit_conf"
CONFIG_NAME = "train"

_PRIMITIVES = (int, float, bool, str)
_UNION_TYPES = (typing.Union, types.UnionType)


# ====================================================================================== schemas
def _field_type(annotation: Any) -> Any:
    """The closest type OmegaConf can hold: primitives, Optional, List/Dict of those; Any otherwise."""
    if annotation in _PRIMITIVES or annotation is Any:
        return annotation
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNION_TYPES:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            inner = _field_type(rest[0])
            return Any if inner is Any else Optional[inner]
        return Any
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        return kinds.pop() if len(kinds) == 1 and next(iter(kinds)) in _PRIMITIVES else Any
    if origin is list:
        return List[_field_type(args[0])] if args else List[Any]
    if origin is dict:
        if not args:
            return Dict[Any, Any]
        key = args[0] if args[0] in _PRIMITIVES else Any
        return Dict[key, _field_type(args[1])]
    return Any


def _annotations(func: Any) -> dict[str, Any]:
    """Resolved annotations of ``func``; one that cannot be resolved counts as Any."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(func, "__globals__", {})
    for key, value in getattr(func, "__annotations__", {}).items():
        try:
            hints[key] = eval(value, namespace) if isinstance(value, str) else value
        except Exception:
            hints[key] = Any
    return hints


def _holds(typ: Any, default: Any) -> bool:
    """Whether an OmegaConf field of type ``typ`` accepts ``default``."""
    probe = dataclasses.make_dataclass("_Probe", [("v", typ, _default_field(default))])
    try:
        OmegaConf.structured(probe)
    except Exception:
        return False
    return True


def _default_field(default: Any) -> Any:
    if isinstance(default, (list, dict, tuple, set)):
        return dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d))
    return dataclasses.field(default=default)


@lru_cache(maxsize=None)
def selector_schema(cls: type) -> type:
    """The dataclass of ``cls``'s settings, generated from its keyword-only ``__init__`` signature.

    Fields: ``name`` (default ``cls.name``), ``schedule`` (``cls.default_schedule``, else ``"epoch"``),
    ``every`` (1), ``start_epoch`` (0), then one per constructor parameter, typed from its annotation
    (mapped to what OmegaConf supports, `Any` otherwise) with the signature's default (``???``, i.e. required, when it
    has none). A parameter whose default OmegaConf cannot hold is left out (the selector keeps its
    default). The class carries ``selector_class``, ``parameters`` (names, in signature order) and
    ``open`` (True when ``__init__`` takes ``**kwargs``: the config then accepts any extra key).
    """
    signature = inspect.signature(cls.__init__)
    hints = _annotations(cls.__init__)
    fields: list[tuple[str, Any, Any]] = [
        ("name", str, dataclasses.field(default=getattr(cls, "name", "") or "")),
        ("schedule", str, dataclasses.field(default=getattr(cls, "default_schedule", "epoch"))),
        ("every", int, dataclasses.field(default=1)),
        ("start_epoch", int, dataclasses.field(default=0)),
    ]
    names: list[str] = []
    is_open = False
    for param in list(signature.parameters.values())[1:]:
        if param.kind is param.VAR_KEYWORD:
            is_open = True
            continue
        if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            continue
        if param.name in STAGE_KEYS:
            raise TypeError(f"{cls.__qualname__}.__init__ takes {param.name!r}, which is reserved for the stage setting of that name")
        typ = _field_type(hints.get(param.name, Any))
        if param.default is param.empty:
            fields.append((param.name, typ, dataclasses.field(default=MISSING)))
            names.append(param.name)
            continue
        default = param.default
        if default is None and typ is not Any:
            typ = Optional[typ]
        if not _holds(typ, default):
            typ = Any
            if not _holds(typ, default):
                continue
        fields.append((param.name, typ, _default_field(default)))
        names.append(param.name)
    schema = dataclasses.make_dataclass(f"{cls.__name__}Config", fields, namespace={"__module__": __name__})
    schema.__doc__ = f"Settings of selector {getattr(cls, 'name', '')!r} ({cls.__module__}.{cls.__qualname__}), generated from its signature."
    schema.selector_class = cls
    schema.parameters = tuple(names)
    schema.open = is_open
    return schema


def _schema_node(cls: type) -> DictConfig:
    schema = selector_schema(cls)
    node = OmegaConf.structured(schema)
    if schema.open:
        OmegaConf.set_struct(node, False)
    return node


class _LazySchemas(dict):
    """The ``schema/selector`` folder of the ConfigStore: lists every registered selector, builds a
    schema (importing the selector's class) only when Hydra opens that one entry.

    Entries stored explicitly (``ConfigStore.store(group="schema/selector", ...)``) take precedence.
    """

    @staticmethod
    def _names() -> list[str]:
        from selectkit import registry

        return list(registry.entries())

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        return isinstance(key, str) and key.endswith(".yaml") and key[: -len(".yaml")] in self._names()

    def __getitem__(self, key: str) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        from hydra.core.config_store import ConfigNode

        from selectkit import registry

        name = key[: -len(".yaml")] if isinstance(key, str) and key.endswith(".yaml") else None
        if name is None or name not in self._names():
            raise KeyError(key)
        node = _schema_node(registry.get(name))
        return ConfigNode(name=key, node=node, group=SCHEMA_GROUP, package=None, provider="selectkit")

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def keys(self) -> list[str]:  # type: ignore[override]
        return sorted(set(dict.keys(self)) | {f"{n}.yaml" for n in self._names()})

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


def register_schemas() -> None:
    """Make every installed selector's schema available in Hydra's ConfigStore as ``schema/selector/<name>``.

    Idempotent and cheap: it lists names only; a selector's class is imported, and its schema built,
    when a config first opens that entry. Selectors registered later (`selectkit.registry.register`) are
    listed too. Hydra calls this at every start through selectkit's search-path plugin.
    """
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    folder = repo.setdefault("schema", {})
    current = folder.get("selector")
    if not isinstance(current, _LazySchemas):
        lazy = _LazySchemas()
        if isinstance(current, dict):
            dict.update(lazy, current)
        folder["selector"] = lazy


# ====================================================================================== one-line errors
_NODE_KINDS = {
    "IntegerNode": "an integer",
    "FloatNode": "a float",
    "BooleanNode": "true or false",
    "StringNode": "a string",
    "BytesNode": "bytes",
    "PathNode": "a path",
}


def _kind(node: Any) -> str | None:
    """What a typed OmegaConf node holds, in words ('a float', 'an integer or null', 'a list', ...)."""
    if node is None:
        return None
    name = type(node).__name__
    if name in _NODE_KINDS:
        text = _NODE_KINDS[name]
    elif name == "EnumNode":
        text = "one of " + ", ".join(m.name for m in node.enum_type)
    elif isinstance(node, ListConfig):
        text = "a list"
    elif isinstance(node, DictConfig):
        text = "a mapping"
    else:
        return None
    optional = getattr(node, "_is_optional", None)
    return f"{text} or null" if callable(optional) and optional() else text


def _join(path: str, key: str | None) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else str(key)


def _omegaconf_line(err: OmegaConfBaseException, base: str = "") -> str:
    """One line for an OmegaConf error, naming the full setting path (``base`` + the error's key)."""
    key = _join(base, str(err.full_key) if getattr(err, "full_key", None) else None)
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and getattr(err, "key", None) is not None:
        parent = err.parent_node if isinstance(getattr(err, "parent_node", None), DictConfig) else None
        if key == base or not key.endswith(str(err.key)):
            key = _join(key, str(err.key))
        schema = OmegaConf.get_type(parent) if parent is not None else None
        cls = getattr(schema, "selector_class", None)
        if cls is not None:
            settings = ", ".join(schema.parameters) or ", ".join(STAGE_KEYS)
            return f"{key} is not a setting of selector {cls.name}; its settings: {settings}"
        known = ", ".join(str(k) for k in parent.keys()) if parent is not None else ""
        return f"{key} is not a known setting" + (f"; known here: {known}" if known else "")
    if isinstance(err, MissingMandatoryValue):
        return f"{key} is required; set it"
    if isinstance(err, ValidationError):
        kind = _kind(getattr(err, "child_node", None))
        if kind is None and getattr(err, "ref_type", None) is not None:
            kind = f"of type {getattr(err, 'ref_type_str', err.ref_type)}"
        if kind is not None:
            return f"{key} must be {kind}, got {err.value!r}"
    first = (str(getattr(err, "msg", "") or err).strip().splitlines() or [type(err).__name__])[0]
    return f"{key}: {first}" if key else first


def _causes(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _one_line(err: BaseException) -> str:
    """A one-line message for any error raised while composing a config."""
    from hydra.errors import MissingConfigException

    chain = list(_causes(err))
    for cause in chain:
        if isinstance(cause, ConfigError):
            return str(cause)
    for cause in chain:
        if isinstance(cause, MissingConfigException):
            missing = str(cause.missing_cfg_file or "")
            group, _, option = missing.rpartition("/")
            if group == SCHEMA_GROUP:
                from selectkit import registry

                return (
                    f"a defaults list attaches /{missing}, but no selector {option!r} is installed; "
                    f"installed selectors: {', '.join(registry.available())}"
                )
            if cause.options and group:
                return f"{group}={option} is not an option of {group}; options: {', '.join(cause.options)}"
            return f"config {missing!r} not found" if missing else _first_line(cause)
    for cause in chain:
        if isinstance(cause, OmegaConfBaseException):
            return _omegaconf_line(cause)
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    return text or type(err).__name__


# ====================================================================================== pipeline stages
def validate_stage(spec: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``spec`` (``name`` plus settings) merged into its selector's schema: the typed settings as a dict.

    ``path`` is where the stage lives (e.g. ``pipeline.stages.rs2``); a wrong type, an unknown key, a
    missing required setting or an unknown selector raises `ConfigError` with one line naming
    ``<path>.<key>``. Interpolations in ``spec`` are resolved against ``spec`` itself: pass resolved values.
    """
    from selectkit import registry

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path} must map name (a selector) and its settings, got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.name must name a selector; installed selectors: {', '.join(registry.available())}")
    if name not in registry.entries():
        raise ConfigError(f"{path}.name: unknown selector {name!r}; installed selectors: {', '.join(registry.available())}")
    node = _schema_node(registry.get(name))
    try:
        merged = OmegaConf.merge(node, dict(spec))
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"{path}.{missing[0]} is required by selector {name}; set it")
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_line(err, path)) from None


# ====================================================================================== command lines
_VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c", "--package", "-p"}
_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_SKIP_FLAGS = {"--shell-completion", "-sc", "--experimental-rerun", "--help", "-h", "--hydra-help", "--version"}


@dataclasses.dataclass
class _CommandLine:
    overrides: list[str]
    config_name: str = CONFIG_NAME
    config_dirs: list[str] = dataclasses.field(default_factory=list)
    multirun: bool = False
    skip: bool = False


def _parse_argv(argv: list[str]) -> _CommandLine:
    """Split a ``selectkit-train`` command line into overrides and the flags ``precheck`` honours."""
    line = _CommandLine(overrides=[])
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=")
        if arg in ("-m", "--multirun"):
            line.multirun = True
        elif flag in _SKIP_FLAGS:
            line.skip = True
        elif arg == "--info":
            if i + 1 < len(args) and args[i + 1] in _INFO_CHOICES:
                i += 1
        elif arg in ("--run", "-r", "--resolve"):
            pass
        elif flag in _VALUE_FLAGS and flag.startswith("-"):
            if eq:
                value = inline
            else:
                i += 1
                value = args[i] if i < len(args) else ""
            if flag in ("--config-name", "-cn"):
                line.config_name = value
            elif flag in ("--config-dir", "-cd"):
                line.config_dirs.append(str(Path(value).expanduser().resolve()))
        elif arg.startswith("-"):
            pass
        else:
            line.overrides.append(arg)
        i += 1
    return line


def _is_hydra_setting(key: str) -> bool:
    key = key.lstrip("~+")
    return (key == "hydra" or key.startswith(("hydra.", "hydra/"))) and key != "hydra.searchpath"


@dataclasses.dataclass
class _Sweep:
    """One ``-m`` sweep: the override and its values as override strings."""

    override: Any
    key: str
    values: list[str]

    def line(self, j: int) -> str:
        return f"{self.key}={self.values[min(j, len(self.values) - 1)]}"


def _plan(line: _CommandLine) -> tuple[list[str], list[_Sweep]]:
    """The fixed overrides (with the search path) and, with ``-m``, the sweeps to check."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    parsed = []
    for text in line.overrides:
        try:
            parsed += parser.parse_overrides([text])
        except HydraException as err:
            detail = str(getattr(err, "message", err)).strip().splitlines()[0]
            raise ConfigError(f"cannot parse the override {text!r} ({detail}); see Hydra's override grammar") from None
    fixed: list[str] = []
    sweeps: list[_Sweep] = []
    searchpath: list[str] = []
    for override in parsed:
        key = override.get_key_element()
        if _is_hydra_setting(key):
            continue
        if key == "hydra.searchpath":
            value = override.value()
            searchpath += [str(v) for v in value] if isinstance(value, list) else [str(value)]
            continue
        if not override.is_sweep_override():
            fixed.append(str(override.input_line))
            continue
        if not line.multirun:
            raise ConfigError(
                f"{override.input_line}: several values need -m (--multirun); for a list write "
                f"{override.key_or_group}=[...], for a string quote it"
            )
        try:
            values = list(override.sweep_string_iterator())
        except Exception:
            continue  # sweeps a sweeper samples (e.g. interval) have no values to list
        if values:
            sweeps.append(_Sweep(override, key, values))
    searchpath += [f"file://{d}" for d in line.config_dirs]
    if searchpath:
        quoted = ",".join("'" + p.replace("\\", "\\\\").replace("'", "\\'") + "'" for p in searchpath)
        fixed.append(f"hydra.searchpath=[{quoted}]")
    return fixed, sweeps


_ABSENT = object()


def _sets_a_value(sweep: _Sweep, cfg: DictConfig) -> bool:
    """Whether ``sweep`` only changes an existing value (no config group, no add or delete)."""
    from hydra.core.override_parser.types import OverrideType

    o = sweep.override
    if o.type is not OverrideType.CHANGE or o.package is not None or "/" in o.key_or_group:
        return False
    if o.key_or_group in cfg.hydra.runtime.choices:
        return False
    return OmegaConf.select(cfg, o.key_or_group, default=_ABSENT, throw_on_missing=False) is not _ABSENT


def _check_values(cfg: DictConfig, sweeps: list[_Sweep]) -> None:
    """Apply every further value of each value sweep to ``cfg`` as Hydra would, and check the result."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for sweep in sweeps:
        for j in range(1, len(sweep.values)):
            value = parser.parse_override(sweep.line(j)).value()
            try:
                OmegaConf.update(cfg, sweep.override.key_or_group, value, merge=True)
            except OmegaConfBaseException as err:
                raise ConfigError(_omegaconf_line(err)) from None
            _check_selection(cfg)


@contextmanager
def _config_module(config_module: str = CONFIG_MODULE, config_dir: str | None = None) -> Iterator[None]:
    """Hydra initialised on ``config_module`` (or ``config_dir``), also inside an app or another context."""
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    gh = GlobalHydra.instance()
    saved = gh.hydra
    gh.hydra = None
    try:
        if config_dir is not None:
            with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
                yield
        else:
            with initialize_config_module(config_module=config_module, version_base="1.3"):
                yield
    finally:
        GlobalHydra.instance().hydra = saved


def _check_selection(cfg: DictConfig) -> None:
    """Type the composed config's pipeline stages (or its selector), and a round loop's acquisition
    stages (``rounds.acquire``, ``rounds.initial.select``), with their schemas."""
    if cfg.get("pipeline") is not None:
        stages = cfg.pipeline.get("stages") if isinstance(cfg.pipeline, DictConfig) else None
        if not isinstance(stages, DictConfig) or len(stages) == 0:
            raise ConfigError("pipeline.stages must map stage names to selector settings")
        items = [(f"pipeline.stages.{key}", stages._get_node(key)) for key in stages.keys()]
    elif cfg.get("selector") is not None:
        items = [("selector", cfg._get_node("selector"))]
    else:
        items = []
    rounds = cfg.get("rounds")
    if isinstance(rounds, DictConfig):
        if isinstance(rounds.get("acquire"), DictConfig):
            items.append(("rounds.acquire", rounds._get_node("acquire")))
        initial = rounds.get("initial")
        if isinstance(initial, DictConfig) and isinstance(initial.get("select"), DictConfig):
            items.append(("rounds.initial.select", initial._get_node("select")))
    for path, node in items:
        try:
            spec = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException:
            spec = OmegaConf.to_container(node, resolve=False)
        validate_stage(spec, path)


def precheck(argv: list[str]) -> None:
    """Compose ``selectkit-train``'s config from a command line; `ConfigError` (one line) if it fails.

    Honours overrides, ``hydra.searchpath=[...]``, ``--config-dir``/``-cd`` and ``--config-name``/``-cn``;
    ignores other ``hydra`` settings and flags. With ``-m``/``--multirun`` every value of every sweep is
    checked at least once: sweeps of config groups (or that add or delete keys) by composing, in as
    many compositions as the longest of them has values; sweeps of plain values by applying each value
    to a composed config, as Hydra applies overrides. Pipeline stages and the selector are then typed by
    their schemas. Prints nothing; ``--help``, shell completion and reruns are left to Hydra.
    """
    from hydra import compose

    line = _parse_argv(list(argv))
    if line.skip:
        return
    fixed, sweeps = _plan(line)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _config_module():
            try:
                cfg = compose(line.config_name, overrides=fixed + [s.line(0) for s in sweeps], return_hydra_config=True)
                _check_selection(cfg)
                values = [s for s in sweeps if _sets_a_value(s, cfg)]
                structural = [s for s in sweeps if s not in values]
                _check_values(cfg, values)
                for j in range(1, max((len(s.values) for s in structural), default=1)):
                    cfg = compose(line.config_name, overrides=fixed + [s.line(j) for s in structural] + [s.line(0) for s in values], return_hydra_config=True)
                    _check_selection(cfg)
                    _check_values(cfg, values)
            except ConfigError:
                raise
            except Exception as err:
                raise ConfigError(_one_line(err)) from None


# ====================================================================================== test kit
def check_selector_config(name: str, yaml_path: str | Path):
    """Check that a plugin's selector YAML composes with its schema; returns the configured selector.

    ``yaml_path`` is ``<conf>/selector/<option>.yaml``. The file is composed by Hydra from ``<conf>``
    alone, so its defaults list must attach ``/schema/selector/<name>@_here_``; the composed values must
    be typed by that schema, name ``name``, and reach ``selectkit.registry.create(name, **params)``
    unchanged. Raises `AssertionError` (or `ConfigError` for a bad value) naming what to fix.
    """
    from hydra import compose

    from selectkit import registry

    path = Path(yaml_path).resolve()
    assert path.is_file(), f"{path} does not exist"
    group = path.parent.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _config_module(config_dir=str(path.parent.parent)):
            try:
                cfg = compose(f"{group}/{path.stem}")
            except Exception as err:
                raise ConfigError(f"{path.name}: {_one_line(err)}") from None
    cfg = cfg.get(group, cfg) if isinstance(cfg.get(group), DictConfig) else cfg
    schema = selector_schema(registry.get(name))
    assert OmegaConf.get_type(cfg) is schema, (
        f"{path} is not typed by the schema of selector {name!r}: add '- /{SCHEMA_GROUP}/{name}@_here_' "
        "(then '- _self_') to its defaults list"
    )
    spec = OmegaConf.to_container(cfg, resolve=True)
    assert spec.get("name") == name, f"{path} configures selector {spec.get('name')!r}, not {name!r}"
    typed = validate_stage(spec, group)
    params = {k: v for k, v in typed.items() if k not in STAGE_KEYS}
    selector = registry.create(name, config_path=group, **params)
    got = selector.get_params()
    assert got == params, f"{path}: the selector's parameters {got} differ from the config's {params}"
    return selector


def check_selector_choice(argv: list[str]) -> None:
    """Refuse ``selector=<unknown>`` with one line listing the installed selectors (before Hydra runs)."""
    from selectkit import registry

    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+~") != "selector":
            continue
        for name in value.split(","):
            name = name.strip()
            if name and name != "null" and name not in registry.available():
                raise ConfigError(f"unknown selector {name!r} in selector={value}; installed selectors: {', '.join(registry.available())}")
