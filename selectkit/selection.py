"""The result every selector returns: which pool items to train on, with what weight, plus new samples.

A `Selection` indexes a *pool*. Positions ``0..pool_size-1`` address existing pool items; positions
``pool_size..pool_size+m-1`` address the ``m`` synthetic samples the selection itself carries. Indices
may repeat (sampling with replacement). Weights, when present, are per selected position and scale the
loss of that sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selectkit.errors import SelectionError


@dataclass(frozen=True)
class Synthetic:
    """Samples created by a selector (e.g. SMOTE), with their provenance.

    Attributes:
        features: float32 array ``[m, ...]`` in the space named by ``space``.
        labels: int64 array ``[m]``.
        parents: int64 array ``[m, 2]``: the pool positions of the two samples each point was made
            from (the seed sample and the neighbour it was interpolated towards). Positions refer to the
            pool the selector saw.
        lam: float32 array ``[m]``: interpolation factor, ``x = x[p0] + lam * (x[p1] - x[p0])``.
        space: ``"input"`` when features live in the dataset's input space, ``"embedding"`` otherwise.
    """

    features: np.ndarray
    labels: np.ndarray
    parents: np.ndarray
    lam: np.ndarray
    space: str = "input"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def check(self, pool_size: int) -> None:
        """Raise `SelectionError` unless shapes, dtypes and provenance are consistent."""
        m = len(self)
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise SelectionError("synthetic.labels must be a 1-D int64 array")
        if self.features.shape[0] != m:
            raise SelectionError(f"synthetic.features has {self.features.shape[0]} rows for {m} labels")
        if self.parents.shape != (m, 2) or self.parents.dtype != np.int64:
            raise SelectionError(f"synthetic.parents must be int64 of shape ({m}, 2)")
        if m and (self.parents.min() < 0 or self.parents.max() >= pool_size):
            raise SelectionError("synthetic.parents point outside the pool")
        if self.lam.shape != (m,) or (m and (np.any(self.lam < 0) or np.any(self.lam > 1))):
            raise SelectionError("synthetic.lam must be a [m] array of values in [0, 1]")
        if self.space not in ("input", "embedding"):
            raise SelectionError(f"synthetic.space must be 'input' or 'embedding', got {self.space!r}")


@dataclass(frozen=True)
class Selection:
    """Indices into a pool, optional weights, optional synthetic samples and free-form metadata."""

    indices: np.ndarray
    weights: np.ndarray | None = None
    synthetic: Synthetic | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @property
    def num_synthetic(self) -> int:
        """How many synthetic samples this selection carries."""
        return 0 if self.synthetic is None else len(self.synthetic)

    def check(self, pool_size: int) -> "Selection":
        """Validate the invariants against a pool of ``pool_size`` items; return ``self``.

        Raises `SelectionError` on: non-1-D or non-int64 indices, indices out of range (synthetic
        positions included), weights of the wrong shape, non-finite or negative weights.
        """
        idx = self.indices
        if not isinstance(idx, np.ndarray) or idx.ndim != 1 or idx.dtype != np.int64:
            raise SelectionError("Selection.indices must be a 1-D int64 numpy array")
        if self.synthetic is not None:
            self.synthetic.check(pool_size)
        upper = pool_size + self.num_synthetic
        if idx.size and (idx.min() < 0 or idx.max() >= upper):
            raise SelectionError(f"Selection.indices must lie in [0, {upper}), got [{idx.min()}, {idx.max()}]")
        if self.weights is not None:
            w = self.weights
            if not isinstance(w, np.ndarray) or w.shape != idx.shape:
                raise SelectionError(f"Selection.weights must be an array of shape {idx.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise SelectionError("Selection.weights must be finite and non-negative")
        return self

    @classmethod
    def all(cls, pool_size: int, **meta: Any) -> "Selection":
        """Every pool item once, unweighted."""
        return cls(np.arange(pool_size, dtype=np.int64), meta=dict(meta))
