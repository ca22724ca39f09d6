"""Running nearest-centre distances for greedy batch acquisition (k-center, BADGE), without an N x N matrix.

`MinDistances` keeps, for every pool row, the squared L2 distance to the nearest centre chosen so far:
the labelled set's rows through the neighbour layer's blocked exact search, then each newly chosen
row through one ``[n, d] x [d]`` pass. Memory is the rows themselves plus a few ``[n]`` vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MinDistances:
    """Squared L2 distance of each row of ``x`` to its nearest centre, updated one centre at a time.

    Rows far from the origin against their spread are centred on their mean first (the layer's
    `selectkit.neighbors.inputs.l2_shift`; a float32 copy of ``x`` then), so that the float32 products
    of each pass keep the distances' precision. Distances do not change under the shift; norms do, so
    ``sq`` (the working rows' squared norms) is an internal of the distance passes and ``norms`` holds
    the squared norms of the rows as given.

    Args:
        x: float32 ``[n, d]`` rows (C-contiguous).
    """

    def __init__(self, x: np.ndarray) -> None:
        from selectkit.neighbors.inputs import l2_shift, shifted

        self.x = np.ascontiguousarray(x, dtype=np.float32)
        #: float64 ``[n]`` squared norms of the rows as given (before any centring)
        self.norms = np.einsum("ij,ij->i", self.x, self.x, dtype=np.float64)
        self.shift = l2_shift(self.x)
        if self.shift is not None:
            self.x = shifted(self.x, self.shift)
            self.sq = np.einsum("ij,ij->i", self.x, self.x, dtype=np.float64)
        else:
            self.sq = self.norms
        self.min = np.full(self.x.shape[0], np.inf)

    def add_reference(self, ref: np.ndarray, config: Any = None) -> None:
        """Fold in the distances to every row of ``ref`` ``[m, d]`` (k=1 search through the neighbour layer)."""
        if ref.shape[0] == 0:
            return
        from selectkit.neighbors import NeighborConfig, knn
        from selectkit.neighbors.inputs import shifted

        exact = NeighborConfig(**{**vars(config or NeighborConfig()), "backend": "flat", "metric": "l2"})
        ref = np.ascontiguousarray(ref, dtype=np.float32)
        if self.shift is not None:
            ref = shifted(ref, self.shift)
        dist, _ = knn(ref, self.x, k=1, config=exact)
        np.minimum(self.min, dist[:, 0].astype(np.float64), out=self.min)

    def distances_to(self, row: int) -> np.ndarray:
        """Squared L2 distances of every row to row ``row`` (float64 ``[n]``, clipped at 0)."""
        d = self.sq + self.sq[row] - 2.0 * (self.x @ self.x[row]).astype(np.float64)
        np.maximum(d, 0.0, out=d)
        d[row] = 0.0
        return d

    def add(self, row: int) -> None:
        """Fold in row ``row`` as a new centre."""
        np.minimum(self.min, self.distances_to(row), out=self.min)


def d2_seeding(dist: MinDistances, k: int, rng: np.random.Generator, first: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding: ``first``, then ``k - 1`` rows each drawn with probability proportional to its
    squared distance to the nearest row drawn so far; returns the rows (distinct, in draw order) and
    each one's squared distance when drawn (the first: its squared norm as given, ``dist.norms``).

    Rows already drawn weigh 0, so no row is drawn twice; if every remaining row is at distance 0 (exact
    duplicates), the next is drawn uniformly among the rows not drawn yet. Updates ``dist`` in place.
    """
    n = dist.x.shape[0]
    picks = np.empty(k, dtype=np.int64)
    d2 = np.empty(k, dtype=np.float64)
    picks[0], d2[0] = first, dist.norms[first]
    taken = np.zeros(n, dtype=bool)
    taken[first] = True
    dist.add(first)
    for step in range(1, k):
        weights = np.where(taken, 0.0, dist.min)
        cumulative = np.cumsum(weights)
        total = cumulative[-1]
        if total > 0:
            row = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
            if row >= n or weights[row] <= 0:
                row = int(np.flatnonzero(weights > 0)[-1])
        else:
            free = np.flatnonzero(~taken)
            row = int(free[rng.integers(free.shape[0])])
        picks[step], d2[step] = row, weights[row]
        taken[row] = True
        dist.add(row)
    return picks, d2
