"""Expose selectkit's configs, and those of every selector plugin, on Hydra's search path.

Plugins name the package holding their YAML in the ``selectkit.configs`` entry-point group.
"""

from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SelectkitSearchPath(SearchPathPlugin):
    """Appends ``pkg://<package>`` for every ``selectkit.configs`` entry point."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for ep in sorted(entry_points(group="selectkit.configs"), key=lambda e: e.name):
            search_path.append(provider=f"selectkit-{ep.name}", path=f"pkg://{ep.value}")
