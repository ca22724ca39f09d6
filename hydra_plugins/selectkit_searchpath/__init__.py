"""Expose selectkit's configs, and those of every selector plugin, on Hydra's search path.

Plugins name the package holding their YAML in the ``selectkit.configs`` entry-point group. The
package's folder is found without importing it (a plugin's package may be slow to import), and the
selector schemas (`selectkit.schema.register_schemas`) are made available in the ConfigStore.
"""

import importlib.util
from importlib.machinery import PathFinder
from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


def _folder(package: str):
    """The directory of ``package``, found without executing it or its parents but the top one;
    None when it cannot be told that way (e.g. a namespace package), so Hydra imports it instead."""
    top, *rest = package.split(".")
    try:
        spec = importlib.util.find_spec(top)
        for i, _ in enumerate(rest):
            if spec is None or not spec.submodule_search_locations:
                return None
            spec = PathFinder.find_spec(".".join([top, *rest[: i + 1]]), list(spec.submodule_search_locations))
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    except (ImportError, KeyError, ValueError):
        return None
    return locations[0] if len(locations) == 1 else None


class SelectkitSearchPath(SearchPathPlugin):
    """Appends every ``selectkit.configs`` entry point's folder (``pkg://`` when it has none)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from selectkit.schema import register_schemas

        register_schemas()
        for ep in sorted(entry_points(group="selectkit.configs"), key=lambda e: e.name):
            folder = _folder(ep.value)
            path = f"file://{folder}" if folder else f"pkg://{ep.value}"
            search_path.append(provider=f"selectkit-{ep.name}", path=path)
