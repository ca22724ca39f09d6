"""Tuple selectors for contrastive training: ``(anchor, positive, negatives)`` tuples by label."""

from selectkit_plugins.tuples.selector import RandomTuples

__all__ = ["RandomTuples"]
