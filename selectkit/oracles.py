"""Oracles: whoever reveals the labels a round loop asks for.

An oracle is built from ``rounds.oracle`` (a ``_target_``), bound to the run's data source with
`Oracle.setup`, and asked with `Oracle.label` for the labels of training-set ids. `check_answer` holds
every oracle to the same rule: exactly the asked ids, one integer class label each; anything else is a
one-line `ConfigError` naming ``rounds.oracle``.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from selectkit.errors import ConfigError


class Oracle(abc.ABC):
    """Base class of oracles: `setup` once with the data source, then `label` per round."""

    def setup(self, source: Any) -> None:
        """Bind to the run's data source (called once, before the first round)."""

    @abc.abstractmethod
    def label(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, labels)``: the training-set ids answered and their int64 class labels."""


class Simulated(Oracle):
    """Reveals the labels the data source already holds, held back from the loop until asked.

    The round loop trains only on ids it has asked for; this oracle answers from the training set's
    true labels (``source.train.labels()``). It refuses ids outside the training set and items the
    source has no label for.
    """

    def __init__(self) -> None:
        self._labels: np.ndarray | None = None

    def setup(self, source: Any) -> None:
        labels = source.train.labels()
        if labels is None:
            raise ConfigError("rounds.oracle: selectkit.oracles.Simulated needs a labelled training set (data.*), this one has no labels")
        self._labels = np.asarray(labels, dtype=np.int64)

    def label(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._labels is None:
            raise ConfigError("rounds.oracle: Simulated.label called before setup(source)")
        ids = np.asarray(ids, dtype=np.int64)
        n = self._labels.shape[0]
        unknown = ids[(ids < 0) | (ids >= n)]
        if unknown.size:
            raise ConfigError(f"rounds.oracle: asked for {unknown.size} unknown ids (e.g. {int(unknown[0])}); the training set has ids 0..{n - 1}")
        out = self._labels[ids]
        if (out < 0).any():
            raise ConfigError(f"rounds.oracle: {int((out < 0).sum())} of the asked items have no true label in the data source")
        return ids.copy(), out


def check_answer(asked: np.ndarray, answer: Any, num_classes: int | None) -> np.ndarray:
    """The labels of ``asked`` (in its order) from an oracle's ``(ids, labels)`` answer.

    Raises a one-line `ConfigError` naming ``rounds.oracle`` when the answer is malformed, leaves out
    asked ids, names ids that were not asked, or holds labels that are not classes of the data.
    """
    try:
        ids, labels = answer
        ids = np.asarray(ids)
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        raise ConfigError(f"rounds.oracle: label(ids) must return (ids, labels), got {type(answer).__name__}") from None
    if ids.ndim != 1 or labels.shape != ids.shape or ids.dtype.kind not in "iu" or labels.dtype.kind not in "iu":
        raise ConfigError("rounds.oracle: label(ids) must return two 1-D integer arrays of equal length")
    extra = np.setdiff1d(ids, asked)
    if extra.size:
        raise ConfigError(f"rounds.oracle: answered {extra.size} unknown ids that were not asked (e.g. {int(extra[0])})")
    if np.unique(ids).size != ids.size:
        raise ConfigError("rounds.oracle: answered some ids more than once")
    if ids.size < asked.size:
        raise ConfigError(f"rounds.oracle: returned {ids.size} labels for the {asked.size} ids asked; every asked id needs a label")
    if labels.size and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise ConfigError(f"rounds.oracle: returned labels outside 0..{(num_classes or 1) - 1}")
    order = np.argsort(ids)
    return labels[order][np.searchsorted(ids[order], asked)].astype(np.int64)
