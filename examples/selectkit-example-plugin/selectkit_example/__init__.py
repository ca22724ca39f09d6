"""An example selector plugin living outside the selectkit repository."""

from __future__ import annotations

import numpy as np

from selectkit import Pool, SelectContext, Selection, Selector
from selectkit.selector import Interval


class Stride(Selector):
    """Every ``step``-th pool item, starting at a random offset drawn each epoch.

    Args:
        step: keep one item in ``step``; an integer >= 1.
    """

    name = "stride"
    parameter_constraints = {"step": Interval(1, None, integer=True)}

    def __init__(self, *, step: int = 10) -> None:
        self.step = step

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        offset = int(ctx.rng().integers(self.step))
        size = len(pool) // self.step
        return Selection((offset + self.step * np.arange(size)).astype(np.int64), meta={"offset": offset})
