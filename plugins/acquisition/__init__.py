"""Acquisition selectors for round loops (active learning): which unlabelled items to label next.

Scored (top-k, or sampled with ``stochastic``): `LeastConfidence`, `Margin`, `Entropy`, `BALD`.
Batch-aware: `KCenter` (core-set), `BADGE`, `TypiClust`. `StochasticAcquisition` samples by any
per-item score the pool offers. Random acquisition is the ``random`` selector with a ``budget``.
"""

from selectkit_plugins.acquisition.badge import BADGE
from selectkit_plugins.acquisition.base import ScoredAcquisition
from selectkit_plugins.acquisition.kcenter import KCenter
from selectkit_plugins.acquisition.stochastic import StochasticAcquisition
from selectkit_plugins.acquisition.typiclust import TypiClust
from selectkit_plugins.acquisition.uncertainty import BALD, Entropy, LeastConfidence, Margin

__all__ = ["BADGE", "BALD", "Entropy", "KCenter", "LeastConfidence", "Margin", "ScoredAcquisition", "StochasticAcquisition", "TypiClust"]
