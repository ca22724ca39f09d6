"""The static random-subset selector."""

from __future__ import annotations

import numpy as np

from selectkit.sampling import balanced_quotas, class_groups, subset_size
from selectkit.selection import Selection
from selectkit.selector import Boolean, FractionSelector, Interval, Pool, SelectContext

_STATIC = 0x5354


class RandomSubset(FractionSelector):
    """One uniformly random ``fraction`` of the pool, the same at every epoch.

    The draw depends on (seed, stage) only, never on the epoch, so the subset is static by construction
    even when the stage is scheduled every epoch.

    Args:
        fraction: share of the pool kept, in (0, 1].
        class_balanced: split the subset evenly over classes (needs labels).
    """

    name = "random"
    default_schedule = "once"
    parameter_constraints = {"fraction": Interval(0.0, 1.0, low_closed=False), "class_balanced": Boolean()}

    def __init__(self, *, fraction: float = 0.1, class_balanced: bool = False) -> None:
        self.fraction = fraction
        self.class_balanced = class_balanced

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        n = len(pool)
        m = subset_size(n, self.fraction)
        rng = ctx.rng(_STATIC, per_epoch=False)
        if not self.class_balanced:
            chosen = rng.choice(n, size=m, replace=False)
        else:
            _, members = class_groups(pool.labels)
            quotas = balanced_quotas(np.array([x.size for x in members]), m, rng)
            chosen = np.concatenate([rng.choice(x, size=q, replace=False) for x, q in zip(members, quotas)])
        return Selection(np.sort(chosen).astype(np.int64), meta={"size": int(m)})
