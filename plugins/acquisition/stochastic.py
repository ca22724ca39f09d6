"""Stochastic batch acquisition: sample the batch by score instead of taking the top-k.

From "Stochastic Batch Acquisition: A Simple Baseline for Deep Active Learning": with scores ``s_i``
(higher is more worth labelling) and a temperature ``T > 0`` (``beta = 1/T``),

* ``power``:    ``p_i ~ s_i^beta`` (scores must be non-negative; a zero score is never drawn while any
  positive one is left),
* ``softmax``:  ``p_i ~ exp(beta * s_i)``,
* ``softrank``: ``p_i ~ r_i^(-beta)``, ``r_i`` the item's rank (1 = best score),

and the ``budget`` items are drawn from ``p`` without replacement, with the Gumbel-top-k trick: the
``budget`` largest ``log p_i + G_i`` (``G_i`` standard Gumbel draws keyed by pool position, ``ctx.key``)
are a sample of ``budget`` successive draws without replacement, so the first pick follows ``p``
exactly. The chosen items are then listed best score first.

Over several ranks each rank scores its shard and the top ``budget`` is taken over the shards
(`selectkit.distributed.global_topk`): only ``budget`` candidates per rank travel. ``softrank`` needs
every item's global rank, so it gathers the ``[n]`` scores (16 bytes per item, not the ``[n, C]``
probabilities).

Two forms, one code path: the ``stochastic``/``temperature`` parameters of every scored acquisition
(``entropy``, ``bald``, ...), and the stage `StochasticAcquisition` (registry name ``stochastic``),
which samples from any per-item score the pool offers by name (``losses``, or the score provider of
another family).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from selectkit.distributed import Comm, global_topk, keyed_gumbel
from selectkit.errors import ConfigError, SelectionError
from selectkit.selection import Acquisition
from selectkit.selector import Check, OneOf, Pool, SelectContext, Selector
from selectkit_plugins.acquisition.base import BUDGET, KINDS, SAMPLING, TEMPERATURE, check_budget, tie_ids, tie_key


def log_weights(scores: np.ndarray, kind: str, temperature: float, ranks: np.ndarray | None, error: Callable[[str], ConfigError]) -> np.ndarray:
    """Unnormalised log sampling probabilities of ``scores`` under ``kind`` at ``temperature``.

    ``ranks`` are the items' global ranks (1 = best), needed by ``softrank`` only; ``error(message)``
    builds the error for scores the kind cannot take (negative scores under ``power``).
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
        return -beta * np.log(ranks)
    raise error(f"must be one of {', '.join(KINDS)}, got {kind!r}")


def global_ranks(comm: Comm, scores: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each local item's rank among every rank's items (1 = best score; equal scores by ``key``, highest
    first), from the gathered ``[n]`` scores and keys."""
    both = np.stack([scores, key], axis=1)
    every = np.concatenate(comm.all_gather(both, "softrank scores"))
    order = np.lexsort((-every[:, 1], -every[:, 0]))
    ranks = np.empty(every.shape[0], dtype=np.float64)
    ranks[order] = np.arange(1, every.shape[0] + 1)
    start = sum(comm.all_gather_objects(int(scores.shape[0]), "softrank sizes")[: comm.rank])
    return ranks[start : start + scores.shape[0]]


def choose(
    pool: Pool, scores: np.ndarray, budget: int, ctx: SelectContext, kind: str | None, temperature: float, error: Callable[[str], ConfigError]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The ``budget`` acquired pool positions, best score first, their scores, and facts for the meta.

    ``scores`` are this rank's shard's (``pool.local_positions``); ``kind=None`` takes the top
    ``budget`` scores over every shard, otherwise they are sampled (module doc). Equal scores are
    ordered by a random key per item (`tie_key`), so the result is the same at every world size.
    """
    comm = pool.collectives()
    positions = pool.local_positions

    def checked() -> np.ndarray:
        if scores.shape != positions.shape:
            raise SelectionError(f"acquisition: {scores.shape[0]} scores for a shard of {positions.shape[0]} items")
        if np.isnan(scores).any():
            raise ConfigError(f"acquisition: {int(np.isnan(scores).sum())} scores are NaN; check the model's outputs")
        return scores

    comm.checked(checked, "acquisition scores")
    key = tie_key(ctx, len(pool), positions)
    tie = tie_ids(key)  # ranked by (value, tie key)
    meta: dict[str, Any] = {}
    if kind is None:
        value = scores
    else:
        ranks = global_ranks(comm, scores, key) if kind == "softrank" else None
        value = log_weights(scores, kind, temperature, ranks, error) + keyed_gumbel(ctx.key(SAMPLING), positions)
        meta = {"stochastic": kind, "temperature": float(temperature)}
    top = global_topk(comm, value, tie, budget, payload={"position": positions, "score": scores})
    chosen, chosen_scores, chosen_tie = top.payload["position"], top.payload["score"], top.ids
    order = np.lexsort((chosen_tie, -chosen_scores))
    return chosen[order].astype(np.int64), chosen_scores[order], meta


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
    sharded = True
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
        shard = pool.local(self.score)
        scores = np.asarray(shard.local, dtype=np.float64)
        if scores.shape != (shard.layout.n_local,):
            raise self.param_error("score", f"names {self.score!r}, which gives shape {scores.shape}, not one score per item ({shard.layout.n_local},)")
        order, chosen, meta = choose(pool, scores, budget, ctx, self.kind, self.temperature, lambda msg: self.param_error("kind", msg))
        return Acquisition(order, chosen.astype(np.float32), meta={"budget": budget, "pool": n, "score": self.score, **meta})


__all__ = ["StochasticAcquisition", "choose", "global_ranks", "log_weights"]
