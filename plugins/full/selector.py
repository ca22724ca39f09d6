"""The full-data selector."""

from __future__ import annotations

from selectkit.selection import Selection
from selectkit.selector import Pool, SelectContext, Selector


class Full(Selector):
    """Every pool item, unweighted: the baseline every other selector is measured against."""

    name = "full"
    default_schedule = "once"

    def __init__(self) -> None:
        pass

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        return Selection.all(len(pool))
