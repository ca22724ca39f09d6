"""A static random subset: one uniformly random subset chosen once and kept for the whole run."""

from selectkit_plugins.random.selector import RandomSubset

__all__ = ["RandomSubset"]
