"""The whole pool, every epoch: the full-data baseline."""

from selectkit_plugins.full.selector import Full

__all__ = ["Full"]
