"""The static random-subset selector; with a ``budget``, the random acquisition of active learning."""

from __future__ import annotations

import numpy as np

from selectkit.sampling import balanced_quotas, class_groups, subset_size
from selectkit.selection import Acquisition, Selection
from selectkit.selector import AnyOf, Boolean, FractionSelector, Interval, IsNone, Pool, SelectContext

_STATIC, _ACQUIRE = 0x5354, 0x5241


class RandomSubset(FractionSelector):
    """One uniformly random ``fraction`` of the pool, the same at every epoch.

    The draw depends on (seed, stage) only, never on the epoch, so the subset is static by construction
    even when the stage is scheduled every epoch.

    With ``budget`` set (a round loop sets it from ``rounds.budget`` when ``rounds.acquire.name`` is
    ``random``) the selector is the random acquisition instead: it returns an `Acquisition` of
    ``budget`` distinct pool items drawn uniformly from (seed, stage, round), without scores;
    ``fraction`` is then not used and ``class_balanced`` must be false (unlabelled items have no
    labels to balance by).

    Args:
        fraction: share of the pool kept, in (0, 1].
        class_balanced: split the subset evenly over classes (needs labels).
        budget: null (a subset to train on) or the number of items to acquire, an integer >= 1 and
            at most the pool's size.
    """

    name = "random"
    default_schedule = "once"
    parameter_constraints = {
        "fraction": Interval(0.0, 1.0, low_closed=False),
        "class_balanced": Boolean(),
        "budget": AnyOf((IsNone(), Interval(1, None, integer=True))),
    }

    def __init__(self, *, fraction: float = 0.1, class_balanced: bool = False, budget: int | None = None) -> None:
        self.fraction = fraction
        self.class_balanced = class_balanced
        self.budget = budget

    @property
    def returns(self) -> type:  # type: ignore[override]
        """`Acquisition` when ``budget`` is set, else `Selection`."""
        return Selection if self.budget is None else Acquisition

    def _check_params_jointly(self) -> None:
        if self.budget is not None and self.class_balanced:
            raise self.param_error("class_balanced", "must be false when budget is set: unlabelled items have no labels to balance by")

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection | Acquisition:
        n = len(pool)
        if self.budget is not None:
            if self.budget > n:
                raise self.param_error("budget", f"is {self.budget}, larger than the {n} unlabelled items it chooses from")
            chosen = ctx.rng(_ACQUIRE, per_epoch=False).choice(n, size=int(self.budget), replace=False)
            return Acquisition(chosen.astype(np.int64), meta={"budget": int(self.budget), "pool": n})
        m = subset_size(n, self.fraction)
        rng = ctx.rng(_STATIC, per_epoch=False)
        if not self.class_balanced:
            chosen = rng.choice(n, size=m, replace=False)
        else:
            _, members = class_groups(pool.labels)
            quotas = balanced_quotas(np.array([x.size for x in members]), m, rng)
            chosen = np.concatenate([rng.choice(x, size=q, replace=False) for x, q in zip(members, quotas)])
        return Selection(np.sort(chosen).astype(np.int64), meta={"size": int(m)})
