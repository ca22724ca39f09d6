"""Leverage-score sampling (registry name ``leverage``).

Exact scores by blocked Cholesky-QR (`scores.exact_scores`), sketched scores for many columns
(`scores.sketched_scores`), ridge and root-leverage scores, and three sampling designs (`selectkit.sampling`):
pivotal sampling along a recursive-PCA tree ("Improved Active Learning via Dependent Leverage Score
Sampling"), Bernoulli, and draws with replacement; importance weights with mean 1 under the design.
"""

from selectkit_plugins.leverage.selector import LeverageSampling

__all__ = ["LeverageSampling"]
