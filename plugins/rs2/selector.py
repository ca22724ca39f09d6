"""The RS2 selector (Repeated Sampling of Random Subsets)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from selectkit.sampling import FeistelPermutation, balanced_quotas, class_groups, subset_size, walk_chunk
from selectkit.selection import Selection
from selectkit.selector import Boolean, FractionSelector, Interval, Pool, SelectContext

_WALK = 0x5253  # salt separating the permutation streams from per-epoch draws
_QUOTA = 0x5154


class RS2(FractionSelector):
    """A fresh random ``fraction`` of the pool every epoch.

    Args:
        fraction: share of the pool selected per epoch, in (0, 1].
        replacement: draw items independently each epoch (True), or walk a permutation so every item is
            seen once per ``ceil(n / m)`` epochs (False).
        class_balanced: split each epoch's draw evenly over classes (needs labels).
    """

    name = "rs2"
    random_order = True
    parameter_constraints = {
        "fraction": Interval(0.0, 1.0, low_closed=False),
        "replacement": Boolean(),
        "class_balanced": Boolean(),
    }

    def __init__(self, *, fraction: float = 0.1, replacement: bool = False, class_balanced: bool = False) -> None:
        self.fraction = fraction
        self.replacement = replacement
        self.class_balanced = class_balanced

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        n = len(pool)
        m = subset_size(n, self.fraction)
        if not self.class_balanced:
            groups: list[np.ndarray | None] = [None]  # None: the whole pool, in pool positions
            sizes = np.array([n])
            quotas = np.array([m])
        else:
            _, groups = class_groups(pool.labels)
            quota_rng = ctx.rng(_QUOTA, per_epoch=False)
            sizes = np.array([g.size for g in groups])
            quotas = balanced_quotas(sizes, m, quota_rng)
        draw_rng = ctx.rng()
        parts = []
        cycles = []
        for g, (members, size, q) in enumerate(zip(groups, sizes, quotas)):
            if q == 0:
                continue
            if self.replacement:
                local = draw_rng.integers(0, size, size=q)
            else:
                per_cycle = math.ceil(size / q)
                cycle, position = divmod(ctx.epoch, per_cycle)
                perm = FeistelPermutation(int(size), ctx.rng(_WALK, g, cycle, per_epoch=False))
                local = walk_chunk(perm, int(q), position, ctx.rng(_WALK, g, cycle, 1, per_epoch=False))
                cycles.append(cycle)
            parts.append(local if members is None else members[local])
        indices = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            indices = indices[draw_rng.permutation(indices.size)]
        meta: dict[str, Any] = {"size": int(indices.size)}
        if cycles:
            meta["cycle"] = int(max(cycles))
        return Selection(indices.astype(np.int64, copy=False), meta=meta)
