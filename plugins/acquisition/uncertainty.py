"""Uncertainty acquisitions: least confidence, margin, entropy and BALD (MC dropout).

Each scores every unlabelled item from the trained model's class probabilities (higher is more
uncertain, hence more worth labelling) and acquires the top ``budget`` or, with ``stochastic``, a
sample by score (`selectkit_plugins.acquisition.base.ScoredAcquisition`). Each rank scores its own
shard of the pool (``pool.local``).
"""

from __future__ import annotations

import numpy as np

from selectkit.selector import Interval, Pool, SelectContext
from selectkit_plugins.acquisition.base import BUDGET, STOCHASTIC, TEMPERATURE, ScoredAcquisition

#: rows of ``mc_probs`` turned into BALD scores at a time (bounds the float64 temporaries)
_BLOCK = 4096


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy (nats) of probability vectors along ``axis``; ``0 log 0 = 0``."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis)


class LeastConfidence(ScoredAcquisition):
    """Score ``1 - max_c p(c | x)``: the items whose most probable class is least probable.

    Args: see `ScoredAcquisition` (``budget``, ``stochastic``, ``temperature``).
    """

    name = "least_confidence"
    requires = frozenset({"probs"})

    def scores(self, pool: Pool, ctx: SelectContext) -> np.ndarray:
        """``1 - max_c p(c | x)`` per item, from the ``probs`` provider."""
        return 1.0 - np.asarray(pool.local("probs").local, dtype=np.float64).max(axis=1)


class Margin(ScoredAcquisition):
    """Score ``1 - (p_1 - p_2)``, the two largest class probabilities: small margins first.

    Args: see `ScoredAcquisition` (``budget``, ``stochastic``, ``temperature``).
    """

    name = "margin"
    requires = frozenset({"probs"})

    def scores(self, pool: Pool, ctx: SelectContext) -> np.ndarray:
        """``1 - (p_1 - p_2)`` per item, from the ``probs`` provider (1 for a single class)."""
        probs = np.asarray(pool.local("probs").local, dtype=np.float64)
        if probs.shape[1] < 2:
            return np.ones(probs.shape[0])
        top2 = -np.partition(-probs, 1, axis=1)[:, :2]
        return 1.0 - (top2[:, 0] - top2[:, 1])


class Entropy(ScoredAcquisition):
    """Score the predictive entropy ``-sum_c p(c | x) log p(c | x)``.

    Args: see `ScoredAcquisition` (``budget``, ``stochastic``, ``temperature``).
    """

    name = "entropy"
    requires = frozenset({"probs"})

    def scores(self, pool: Pool, ctx: SelectContext) -> np.ndarray:
        """The entropy of each item's ``probs``."""
        return entropy(pool.local("probs").local, axis=1)


class BALD(ScoredAcquisition):
    """BALD with MC dropout: the mutual information between the prediction and the model's weights,
    ``H[mean_t p_t] - mean_t H[p_t]`` over ``passes`` stochastic forward passes (dropout on).

    "Bayesian Active Learning for Classification and Preference Learning" defines the score; the
    passes come from the ``mc_probs`` provider, which refuses a model without dropout.

    Args:
        budget, stochastic, temperature: see `ScoredAcquisition`.
        passes: MC-dropout forward passes, an integer >= 1 (one pass gives a score of 0 everywhere).
    """

    name = "bald"
    parameter_constraints = {"budget": BUDGET, "stochastic": STOCHASTIC, "temperature": TEMPERATURE, "passes": Interval(1, None, integer=True)}

    def __init__(self, *, budget: int = 10, stochastic: str | None = None, temperature: float = 1.0, passes: int = 20) -> None:
        super().__init__(budget=budget, stochastic=stochastic, temperature=temperature)
        self.passes = passes

    @property
    def requires(self) -> dict[str, dict[str, int]]:  # type: ignore[override]
        """``mc_probs`` with this selector's ``passes``."""
        return {"mc_probs": {"passes": self.passes}}

    def scores(self, pool: Pool, ctx: SelectContext) -> np.ndarray:
        """The mutual information per item, from ``mc_probs`` ``[n, passes, C]`` (clipped at 0), in blocks of rows."""
        mc = pool.local("mc_probs", passes=int(self.passes)).local
        score = np.empty(mc.shape[0], dtype=np.float64)
        for start in range(0, mc.shape[0], _BLOCK):
            block = np.asarray(mc[start : start + _BLOCK], dtype=np.float64)
            score[start : start + _BLOCK] = entropy(block.mean(axis=1), axis=1) - entropy(block, axis=2).mean(axis=1)
        return np.maximum(score, 0.0)
