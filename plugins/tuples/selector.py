"""The random-tuples selector: a label-driven baseline for contrastive training."""

from __future__ import annotations

import numpy as np

from selectkit.sampling import subset_size
from selectkit.selection import Tuples
from selectkit.selector import Interval, Pool, SelectContext, Selector

_TUPLES = 0x5455


class RandomTuples(Selector):
    """For each anchor a random positive of its label (never itself) and ``negatives`` random items of
    other labels, drawn afresh every epoch.

    Anchors are a uniformly random ``fraction`` of the pool, in random order. Anchors whose class has a
    single member in the pool have no positive and are skipped (``meta['skipped_singleton']``).
    Negatives are drawn uniformly from all items of other labels, independently (a row may repeat an
    item). Every draw comes from ``ctx.rng``.

    Args:
        fraction: share of the pool drawn as anchors each epoch, in (0, 1].
        negatives: negatives per tuple, ``>= 0``; with 0 a contrastive loss takes the batch's other
            tuples as negatives.
    """

    name = "random_tuples"
    requires = frozenset({"labels"})
    returns = Tuples
    sharded = True  # labels only, which every rank holds whole: every rank draws the same tuples
    parameter_constraints = {
        "fraction": Interval(0.0, 1.0, low_closed=False),
        "negatives": Interval(0, None, integer=True),
    }

    def __init__(self, *, fraction: float = 1.0, negatives: int = 1) -> None:
        self.fraction = fraction
        self.negatives = negatives

    def _select(self, pool: Pool, ctx: SelectContext) -> Tuples:
        labels = np.asarray(pool.labels)
        n, k = labels.shape[0], int(self.negatives)
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        if k and classes.size < 2:
            raise self.param_error("negatives", f"={k} needs items of at least two labels in the pool, which has only label {classes[0]!r}; set it to 0")
        rng = ctx.rng(_TUPLES)
        drawn = rng.permutation(n)[: subset_size(n, self.fraction)]
        keep = counts[inverse[drawn]] >= 2
        anchors = drawn[keep].astype(np.int64)
        # pool positions grouped by class: class c occupies order[starts[c] : starts[c] + counts[c]]
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts[inverse[order]]
        c = inverse[anchors]
        u = (rng.random(anchors.shape[0]) * (counts[c] - 1)).astype(np.int64)
        positives = order[starts[c] + u + (u >= rank[anchors])].astype(np.int64)
        others = (n - counts[c])[:, None]
        v = (rng.random((anchors.shape[0], k)) * others).astype(np.int64)
        negatives = order[v + (v >= starts[c][:, None]) * counts[c][:, None]].astype(np.int64)
        meta = {"anchors_drawn": int(drawn.shape[0]), "tuples": int(anchors.shape[0]), "skipped_singleton": int((~keep).sum()), "negatives": k}
        return Tuples(anchors, positives, negatives.reshape(anchors.shape[0], k), meta=meta)
