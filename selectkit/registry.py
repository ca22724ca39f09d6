"""Selector registry fed by the ``selectkit.selectors`` entry-point group.

Built-in selectors are registered through the same entry-point group an external plugin uses, so there
is one discovery path. Entry points are read once and loaded lazily on first use. `register` adds a
selector class at run time (notebooks, tests); it warns when it replaces a name already registered.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from selectkit.errors import ConfigError

GROUP = "selectkit.selectors"


@dataclass
class Entry:
    """One registered selector: where it comes from and, once loaded, its class."""

    name: str
    target: str
    distribution: str
    version: str
    _entry_point: Any = None
    _cls: type | None = None

    def load(self) -> type:
        """Import and cache the selector class."""
        if self._cls is None:
            from selectkit.selector import Selector

            cls = self._entry_point.load()
            if not (isinstance(cls, type) and issubclass(cls, Selector)):
                raise ConfigError(f"entry point {self.name!r} ({self.target}) is not a selectkit Selector subclass")
            self._cls = cls
        return self._cls


_runtime: dict[str, Entry] = {}


@lru_cache(maxsize=1)
def _discovered() -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        entry = Entry(
            name=ep.name,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            _entry_point=ep,
        )
        if ep.name in found and found[ep.name].target != entry.target:
            warnings.warn(
                f"selector {ep.name!r} from {entry.distribution} overrides the one from {found[ep.name].distribution}",
                stacklevel=2,
            )
        found[ep.name] = entry
    return found


def entries() -> dict[str, Entry]:
    """Every known selector by name: discovered entry points, then run-time registrations."""
    merged = dict(_discovered())
    merged.update(_runtime)
    return dict(sorted(merged.items()))


def available() -> list[str]:
    """Names of every installed selector, sorted."""
    return list(entries())


def get(name: str) -> type:
    """The selector class registered as ``name``; `ConfigError` listing the installed ones otherwise."""
    table = entries()
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"unknown selector {name!r}; installed selectors: {', '.join(table) or 'none'}")
    return table[name].load()


def register(name: str | None = None):
    """Class decorator registering a selector at run time (warns when it replaces a name)."""

    def deco(cls: type) -> type:
        key = name or cls.name
        if not key:
            raise ValueError("register() needs a name or a class with a `name` attribute")
        if key in entries():
            warnings.warn(f"selector {key!r} is already registered; the new registration replaces it", stacklevel=2)
        module = getattr(cls, "__module__", "?")
        _runtime[key] = Entry(key, f"{module}:{cls.__qualname__}", "<runtime>", "-", _cls=cls)
        return cls

    return deco


def unregister(name: str) -> None:
    """Remove a run-time registration (entry points stay)."""
    _runtime.pop(name, None)


def create(name: str, config_path: str = "selector", **params: Any):
    """Instantiate selector ``name`` with ``params``; unknown parameters give a `ConfigError`."""
    cls = get(name)
    allowed = cls._param_names()
    extra = sorted(set(params) - set(allowed))
    if extra:
        raise ConfigError(f"{config_path}.{extra[0]} is not a parameter of selector {name!r}; it takes: {', '.join(allowed) or 'none'}")
    obj = cls(**params)
    obj.config_path = config_path
    return obj
