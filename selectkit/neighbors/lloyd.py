"""Lloyd's iterations on CPU, below both k-means and IVF training.

The loop imports only the flat engine and the block planner, so `selectkit.neighbors.kmeans` (which
also assigns through `NeighborIndex`) and `selectkit.neighbors.ivf` (which trains its coarse
quantizer here) both sit above it, and neither depends on the other.

Each iteration assigns every point to its nearest centroid with the flat engine (GEMM tiles against
the centroids, no ``n x k`` distance matrix beyond one tile per worker) and, in the same sweep, sums
the points of each cluster (weighted when weights are given). A cluster left empty (no weight)
restarts at the point farthest from its centroid, taken out of that point's cluster, as
scikit-learn's Lloyd does. Iterations stop early when no assignment changes.
"""

from __future__ import annotations

import numpy as np

from selectkit.neighbors.config import NeighborConfig
from selectkit.neighbors.flat import FlatEngine
from selectkit.neighbors.inputs import normalized
from selectkit.neighbors.memory import plan_blocks


def lloyd(
    data: np.ndarray,
    centroids: np.ndarray,
    n_iter: int,
    spherical: bool = False,
    weights: np.ndarray | None = None,
    config: NeighborConfig | None = None,
) -> tuple[np.ndarray, int]:
    """Up to ``n_iter`` Lloyd iterations (L2) from ``centroids``: ``(centroids float32 [k, d], iterations run)``.

    ``data`` is float32 C-contiguous ``[n, d]``; ``weights`` (float64 ``[n]``, non-negative, checked
    by the caller) make each centroid the weighted mean of its points. ``spherical`` renormalises
    the centroids after each update. The iterations run are the updates made: an iteration whose
    assignment (of the points with a positive weight) equals the previous one ends the loop
    without updating. ``config`` sets the block
    sizes and memory cap of the assignment (its backend and metric are not used).
    """
    exact = NeighborConfig(**{**vars(config or NeighborConfig()), "backend": "flat", "metric": "l2"})
    centroids = np.array(centroids, dtype=np.float32)
    k, d = centroids.shape
    sq_norms = np.einsum("ij,ij->i", data, data, dtype=np.float32)
    blocks = plan_blocks(k, 1, d, exact)
    active = None if weights is None or (weights > 0).all() else weights > 0  # zero weights move no centroid
    previous = None
    done = 0
    for _ in range(n_iter):
        scores, labels, sums, mass = FlatEngine(centroids, l2=True).assign(data, blocks, weights=weights)
        settled = labels if active is None else labels[active]
        if previous is not None and np.array_equal(settled, previous):
            break  # converged: the update would give the same centroids
        counts = mass.copy() if weights is None else np.bincount(labels, minlength=k)
        empty = np.flatnonzero(mass == 0)
        updated = centroids.copy()
        far = np.zeros(0, dtype=np.int64)
        if empty.size:
            # The farthest points from their centroids (|x|^2 - 2 * score) start the empty clusters.
            dist = sq_norms - 2 * scores
            far = np.argpartition(dist, -empty.size)[-empty.size :]
            far = far[np.argsort(-dist[far], kind="stable")]
            for point in far:
                w = 1 if weights is None else weights[point]
                sums[labels[point]] -= w * data[point]
                mass[labels[point]] -= w
                counts[labels[point]] -= 1
        filled = (counts > 0) & (mass > 0)
        filled[empty] = False
        updated[filled] = sums[filled] / mass[filled, None]
        updated[empty] = data[far]
        centroids = normalized(updated) if spherical else updated
        previous = settled
        done += 1
    return np.ascontiguousarray(centroids, dtype=np.float32), done
