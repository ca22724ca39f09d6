"""Encoders for ``embedding: encoder``: callables mapping a ``[b, d]`` float32 batch to ``[b, d']``."""

from __future__ import annotations

import numpy as np


class RandomProjection:
    """A Gaussian random projection to ``out_features`` dimensions (Johnson-Lindenstrauss).

    Distances are kept up to a small factor, so k-means on raw features of high dimension runs on
    ``out_features`` columns instead. The matrix is drawn from ``seed`` once the input width is known.
    """

    def __init__(self, out_features: int = 64, seed: int = 0) -> None:
        if isinstance(out_features, bool) or not isinstance(out_features, int) or out_features < 1:
            raise ValueError(f"out_features must be a positive integer, got {out_features!r}")
        self.out_features = out_features
        self.seed = seed
        self._matrix: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x @ G / sqrt(out_features)`` with ``G`` standard normal ``[d, out_features]``."""
        x = np.asarray(x, dtype=np.float32)
        if self._matrix is None or self._matrix.shape[0] != x.shape[1]:
            g = np.random.default_rng([self.seed, x.shape[1]]).standard_normal((x.shape[1], self.out_features))
            self._matrix = (g / np.sqrt(self.out_features)).astype(np.float32)
        return x @ self._matrix
