"""RS2: a fresh random subset of the training set every epoch.

From "Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning". Without replacement the
selector walks a permutation of the pool, so every item is seen once per ``ceil(n / m)`` epochs (at most
``ceil(1 / fraction)``); with replacement each epoch draws ``m`` items independently.
"""

from selectkit_plugins.rs2.selector import RS2

__all__ = ["RS2"]
