"""Acquisition selectors for round loops (active learning): which unlabelled items to label next."""

from selectkit_plugins.acquisition.selector import LeastConfidence

__all__ = ["LeastConfidence"]
