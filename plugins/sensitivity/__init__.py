"""Clustering-based sensitivity sampling: an importance-weighted coreset from k-means clusters.

From "Data-Efficient Learning via Clustering-Based Sensitivity Sampling: Foundation Models and Beyond".
The selector clusters an embedding of the pool (raw features, the model being trained, or a configured
encoder), bounds each item's loss by its cluster's term plus its distance to the centre, samples by
that bound mixed with uniform, and weights the draws so the weighted loss is unbiased.
"""

from selectkit_plugins.sensitivity.encoders import RandomProjection
from selectkit_plugins.sensitivity.selector import SensitivitySampling

__all__ = ["RandomProjection", "SensitivitySampling"]
