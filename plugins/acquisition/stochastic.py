"""Stochastic batch acquisition: sample the batch by score instead of taking the top-k.

From "Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning": with scores ``s_i``
(higher is more worth labelling) and a temperature ``T > 0`` (``beta = 1/T``),

* ``power``:    ``p_i ~ s_i^beta`` (scores must be non-negative; a zero score is never drawn while any
  positive one is left),
* ``softmax``:  ``p_i ~ exp(beta * s_i)``,
* ``softrank``: ``p_i ~ r_i^(-beta)``, ``r_i`` the item's rank (1 = best score),

and the ``budget`` items are drawn from ``p`` without replacement, with the Gumbel-top-k trick: the
``budget`` largest ``log p_i + G_i`` (``G_i`` standard Gumbel draws from ``ctx.rng``) are a sample of
``budget`` successive draws without replacement, so the first pick follows ``p`` exactly. The chosen
items are then listed best score first.

Two forms, one code path: the ``stochastic``/``temperature`` parameters of every scored acquisition
(``entropy``, ``bald``, ...), and the stage `StochasticAcquisition` (registry name ``stochastic``),
which samples from any per-item score the pool offers by name (``losses``, or the score provider of
another family).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Acquisition
from selectkit.selector import Check, OneOf, Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, KINDS, SAMPLING, TEMPERATURE, check_budget, tie_key, top_k


def log_weights(scores: np.ndarray, kind: str, temperature: float, key: np.ndarray, error: Callable[[str], ConfigError]) -> np.ndarray:
    """Unnormalised log sampling probabilities of ``scores`` under ``kind`` at ``temperature``.

    ``key`` orders equal scores for ``softrank``; ``error(message)`` builds the error for scores the
    kind cannot take (negative scores under ``power``).
    """
    beta = 1.0 / float(temperature)
    if kind == "power":
        if scores.size and scores.min() < 0:
            raise error(f"is power, which needs non-negative scores; the lowest is {scores.min():.4g} (use softmax or softrank)")
        with np.errstate(divide="ignore"):
            return beta * np.log(scores)
    if kind == "softmax":
        return beta * scores
    if kind == "softrank":
        ranks = np.empty(scores.shape[0], dtype=np.float64)
        ranks[np.lexsort((-key, -scores))] = np.arange(1, scores.shape[0] + 1)
        return -beta * np.log(ranks)
    raise error(f"must be one of {', '.join(KINDS)}, got {kind!r}")


def gumbel_top_k(logw: np.ndarray, k: int, rng: np.random.Generator, key: np.ndarray) -> np.ndarray:
    """``k`` distinct positions drawn without replacement with probabilities ``~ exp(logw)``, in draw order."""
    perturbed = logw + rng.gumbel(size=logw.shape[0])
    return top_k(perturbed, k, key)


def choose(scores: np.ndarray, budget: int, ctx: SelectContext, kind: str | None, temperature: float, error: Callable[[str], ConfigError]) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``budget`` acquired positions, best score first, and facts for the selection's meta.

    ``kind=None`` takes the top ``budget`` scores; otherwise they are sampled (module doc).
    """
    if np.isnan(scores).any():
        raise ConfigError(f"acquisition: {int(np.isnan(scores).sum())} scores are NaN; check the model's outputs")
    key = tie_key(ctx, scores.shape[0])
    if kind is None:
        return top_k(scores, budget, key), {}
    drawn = gumbel_top_k(log_weights(scores, kind, temperature, key, error), budget, ctx.rng(SAMPLING), key)
    order = drawn[np.lexsort((-key[drawn], -scores[drawn]))]
    return order.astype(np.int64), {"stochastic": kind, "temperature": float(temperature)}


class StochasticAcquisition(Selector):
    """Stochastic batch acquisition over a per-item score the pool offers by name.

    The stage form of the ``stochastic`` parameter of the scored acquisitions: for scores that come
    from another family, e.g. per-sample ``losses`` or any score provider a plugin adds.

    Args:
        budget: items to acquire, an integer >= 1 and at most the pool's size (in a round loop set
            once, in ``rounds.budget``).
        score: the provider whose ``[n]`` values are the scores (higher is more worth labelling).
        kind: ``power``, ``softmax`` or ``softrank`` (module doc).
        temperature: ``T`` > 0 (``beta = 1/T``).
    """

    name = "stochastic"
    returns = Acquisition
    parameter_constraints = {
        "budget": BUDGET,
        "score": Check(lambda v: isinstance(v, str) and bool(v), "the name of a per-item score provider (e.g. losses)"),
        "kind": OneOf(KINDS),
        "temperature": TEMPERATURE,
    }

    def __init__(self, *, budget: int = 10, score: str = "losses", kind: str = "power", temperature: float = 1.0) -> None:
        self.budget = budget
        self.score = score
        self.kind = kind
        self.temperature = temperature

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """The provider named by ``score``."""
        return frozenset({self.score}) if isinstance(self.score, str) and self.score else frozenset()

    def _select(self, pool: Pool, ctx: SelectContext) -> Acquisition:
        n = len(pool)
        budget = check_budget(self, n)
        scores = np.asarray(pool.get(self.score), dtype=np.float64)
        if scores.shape != (n,):
            raise self.param_error("score", f"names {self.score!r}, which gives shape {scores.shape}, not one score per item ({n},)")
        order, meta = choose(scores, budget, ctx, self.kind, self.temperature, lambda msg: self.param_error("kind", msg))
        return Acquisition(order, scores[order].astype(np.float32), meta={"budget": budget, "pool": n, "score": self.score, **meta})


__all__ = ["StochasticAcquisition", "choose", "gumbel_top_k", "log_weights"]
