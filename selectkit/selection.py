"""What selectors return: three result kinds, each checked against the pool it was chosen from.

* `Selection`: pool items to train on, with importance weights, plus any samples the selector created.
  Positions ``0..pool_size-1`` address pool items; ``pool_size..pool_size+m-1`` the ``m`` synthetic
  samples the selection carries. Indices may repeat (sampling with replacement); the size may change
  from one epoch to the next.
* `Acquisition`: unlabelled pool items to send to the oracle, with their scores (active learning).
* `Tuples`: ``(anchor, positive, negatives)`` index tuples with their scores (contrastive training);
  a tuple batch sampler keeps each tuple whole in one batch and on one rank.

Weights: a selection's weights are importance weights scaled so that the mean of ``weight * loss``
over the selected items is an unbiased estimate of the mean loss over the pool (so ``E[w] = 1`` under
the selector's sampling design: ``w = 1 / (n p)`` for draws with probabilities ``p``, ``w = m / (n pi)``
for inclusion probabilities ``pi`` with expected size ``m``). With the training loss's default
normalisation (``task.weight_norm: mean``, a batch's weighted losses divided by its count of real items)
the training loss is then an unbiased estimate of the full-data mean loss at an unchanged learning-rate
scale. Weights compose multiplicatively along a pipeline. Padding is never a weight: the sampler marks
padding rows with a mask of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from selectkit.errors import SelectionError


def _index_array(a: Any, name: str, ndim: int = 1) -> None:
    if not isinstance(a, np.ndarray) or a.ndim != ndim or a.dtype != np.int64:
        raise SelectionError(f"{name} must be a {ndim}-D int64 numpy array")


def _in_range(a: np.ndarray, upper: int, name: str) -> None:
    if a.size and (a.min() < 0 or a.max() >= upper):
        raise SelectionError(f"{name} must lie in [0, {upper}), got [{a.min()}, {a.max()}]")


def _scores(a: Any, shape: tuple[int, ...], name: str) -> None:
    if a is None:
        return
    if not isinstance(a, np.ndarray) or a.shape != shape:
        raise SelectionError(f"{name} must be an array of shape {shape}")
    if a.dtype.kind != "f" or np.isnan(a).any():
        raise SelectionError(f"{name} must be floating point without NaN")


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
        space: ``"input"`` when features live in the dataset's input space (the core appends them to
            the training set), any other name (e.g. ``"embedding"``) when the creating selector's
            `Selector.training_hook` turns them into training rows.
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
        _in_range(self.parents, pool_size, "synthetic.parents")
        if self.lam.shape != (m,) or (m and (np.any(self.lam < 0) or np.any(self.lam > 1))):
            raise SelectionError("synthetic.lam must be a [m] array of values in [0, 1]")
        if not isinstance(self.space, str) or not self.space:
            raise SelectionError(f"synthetic.space must name a space, got {self.space!r}")


@dataclass(frozen=True)
class Selection:
    """Indices into a pool, optional importance weights, optional synthetic samples, and metadata.

    ``meta`` holds JSON-friendly facts about the selection (e.g. SMOTE's danger counts, RS2's cycle);
    the controller records them in the run's manifest.
    """

    kind: ClassVar[str] = "selection"

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
        positions included), weights of the wrong shape, non-finite or non-positive weights.
        """
        _index_array(self.indices, "Selection.indices")
        if self.synthetic is not None:
            self.synthetic.check(pool_size)
        _in_range(self.indices, pool_size + self.num_synthetic, "Selection.indices")
        if self.weights is not None:
            w = self.weights
            if not isinstance(w, np.ndarray) or w.shape != self.indices.shape:
                raise SelectionError(f"Selection.weights must be an array of shape {self.indices.shape}")
            if not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise SelectionError("Selection.weights must be finite and positive (leave an item out instead of weighting it 0)")
        return self

    @classmethod
    def all(cls, pool_size: int, **meta: Any) -> "Selection":
        """Every pool item once, unweighted."""
        return cls(np.arange(pool_size, dtype=np.int64), meta=dict(meta))


@dataclass(frozen=True)
class Acquisition:
    """Unlabelled pool items to be labelled by the oracle, best first, with their acquisition scores."""

    kind: ClassVar[str] = "acquisition"

    indices: np.ndarray
    scores: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def check(self, pool_size: int) -> "Acquisition":
        """Indices int64, in range and distinct (an item is labelled once); scores one per index."""
        _index_array(self.indices, "Acquisition.indices")
        _in_range(self.indices, pool_size, "Acquisition.indices")
        if np.unique(self.indices).shape[0] != self.indices.shape[0]:
            raise SelectionError("Acquisition.indices must be distinct")
        _scores(self.scores, self.indices.shape, "Acquisition.scores")
        return self


@dataclass(frozen=True)
class Tuples:
    """``t`` training tuples: ``anchors[i]``, ``positives[i]`` and the row ``negatives[i]`` (``k >= 0``).

    With ``k = 0`` a contrastive loss takes the other tuples of the batch as negatives.
    """

    kind: ClassVar[str] = "tuples"

    anchors: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    positive_scores: np.ndarray | None = None
    negative_scores: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def tuple_size(self) -> int:
        """Items per tuple: anchor, positive and the negatives."""
        return 2 + int(self.negatives.shape[1])

    def items(self) -> np.ndarray:
        """``[t, tuple_size]`` item ids, anchor first, then the positive, then the negatives."""
        return np.concatenate([self.anchors[:, None], self.positives[:, None], self.negatives], axis=1)

    def check(self, pool_size: int) -> "Tuples":
        """Shapes ``[t]``, ``[t]``, ``[t, k]``, int64 and in range; anchor never its own positive."""
        _index_array(self.anchors, "Tuples.anchors")
        _index_array(self.positives, "Tuples.positives")
        _index_array(self.negatives, "Tuples.negatives", ndim=2)
        t = self.anchors.shape[0]
        if self.positives.shape != (t,) or self.negatives.shape[0] != t:
            raise SelectionError(f"Tuples: {t} anchors need {t} positives and {t} rows of negatives")
        for name, a in (("anchors", self.anchors), ("positives", self.positives), ("negatives", self.negatives)):
            _in_range(a, pool_size, f"Tuples.{name}")
        if np.any(self.anchors == self.positives):
            raise SelectionError("Tuples: an anchor is its own positive")
        if self.negatives.size and np.any(self.negatives == self.anchors[:, None]):
            raise SelectionError("Tuples: an anchor is among its own negatives")
        _scores(self.positive_scores, (t,), "Tuples.positive_scores")
        _scores(self.negative_scores, self.negatives.shape, "Tuples.negative_scores")
        return self


#: The result kinds, by ``kind`` name.
RESULT_KINDS: dict[str, type] = {c.kind: c for c in (Selection, Acquisition, Tuples)}
