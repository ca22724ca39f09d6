"""k-means: Lloyd's iterations with every assignment made by the neighbour layer's exact search.

On CPU each iteration assigns all points through the layer's flat engine (GEMM tiles against the
centroids, no ``n x k`` distance matrix beyond one tile per worker), then recomputes the centroids.
A cluster left empty takes the point farthest from its centroid, taken out of that point's
cluster, as scikit-learn's Lloyd does, so the objective matches scikit-learn's at equal iterations.
Iterations stop early when no assignment changes. On a GPU FAISS's own Lloyd runs instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selectkit.errors import ConfigError
from selectkit.neighbors.backend import import_faiss, use_gpu
from selectkit.neighbors.config import NeighborConfig, resolve
from selectkit.neighbors.inputs import as_float32, normalized, shape_of
from selectkit.neighbors.memory import F32, GB, I64, MemoryCapExceeded, estimate_memory_bytes


def kmeans(
    x: Any,
    k: int,
    n_iter: int = 20,
    seed: int = 0,
    init: Any = None,
    config: NeighborConfig | None = None,
    max_points_per_centroid: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means: ``(centroids float32 [k, d], assignments int64 [n], inertia)``.

    Runs up to ``n_iter`` iterations (assign, then update) from ``init`` (``[k, d]`` initial
    centroids) or from ``k`` distinct points drawn with ``seed``, stopping early once no assignment
    changes. Each point is then assigned to its nearest final centroid through the layer, and
    ``inertia`` is the sum of squared distances to it, as scikit-learn's
    ``KMeans(algorithm='lloyd', max_iter=n_iter, tol=0)`` reports it. ``config.metric='cosine'``
    runs spherical k-means on normalised copies (centroids renormalised after each update,
    inertia measured on the normalised points). All points train every iteration unless
    ``max_points_per_centroid`` caps the training set at ``k * max_points_per_centroid`` points
    drawn with ``seed`` (the final assignment still covers every point). ``config.device`` picks CPU
    or GPU; its ``backend`` is not used (assignment is exact).
    """
    config = resolve(config)
    if config.metric == "ip":
        raise ConfigError("neighbors.metric='ip' has no k-means objective; use neighbors.metric=l2 or cosine")
    n, d = shape_of(x, "x")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an integer between 1 and the {n} points to cluster")
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter={n_iter!r} must be a positive integer")
    if max_points_per_centroid is not None and max_points_per_centroid < 1:
        raise ValueError(f"max_points_per_centroid={max_points_per_centroid!r} must be a positive integer or None")
    k, n_iter = int(k), int(n_iter)
    exact = NeighborConfig(**{**vars(config), "backend": "flat", "metric": "l2"})
    need = n * d * F32 + estimate_memory_bytes(k, n, d, 1, exact) + n * (F32 + I64)
    if need > config.memory_cap_gb * GB:
        raise MemoryCapExceeded(
            f"neighbors.memory_cap_gb={config.memory_cap_gb:g} is below the {need / GB:.2f} GB this k-means needs; "
            "raise neighbors.memory_cap_gb"
        )
    data = as_float32(x, "x")
    if config.metric == "cosine":
        data = normalized(data)
    start = _initial_centroids(init, data, k, seed, config.metric == "cosine")

    train = data
    if max_points_per_centroid and n > k * max_points_per_centroid:
        rows = np.random.default_rng([seed, 1]).choice(n, k * int(max_points_per_centroid), replace=False)
        train = data[np.sort(rows)]
    spherical = config.metric == "cosine"
    if use_gpu(config):
        centroids = _faiss_lloyd(train, start, n_iter, seed, spherical)
    else:
        centroids = _lloyd(train, start, n_iter, spherical, exact)

    from selectkit.neighbors.search import NeighborIndex

    dist, idx = NeighborIndex(n_neighbors=1, config=exact).fit(centroids).search(data, 1)
    return centroids, idx[:, 0].copy(), float(dist[:, 0].sum(dtype=np.float64))


def kmeans_centroids(data: np.ndarray, start: np.ndarray, n_iter: int) -> np.ndarray:
    """Centroids after up to ``n_iter`` Lloyd iterations (L2, CPU) from ``start``; inputs float32 C-contiguous."""
    return _lloyd(data, np.array(start, dtype=np.float32), n_iter, False, NeighborConfig(backend="flat"))


def _lloyd(data: np.ndarray, centroids: np.ndarray, n_iter: int, spherical: bool, exact: NeighborConfig) -> np.ndarray:
    """Lloyd's iterations on CPU; returns the final centroids (float32 ``[k, d]``)."""
    from selectkit.neighbors.flat import FlatEngine
    from selectkit.neighbors.memory import plan_blocks

    k, d = centroids.shape
    sq_norms = np.einsum("ij,ij->i", data, data, dtype=np.float32)
    blocks = plan_blocks(k, 1, d, exact)
    previous = None
    for _ in range(n_iter):
        scores, labels, sums, counts = FlatEngine(centroids, l2=True).assign(data, blocks)
        if previous is not None and np.array_equal(labels, previous):
            break  # converged: the update would give the same centroids
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            # The farthest points from their centroids (|x|^2 - 2 * score) start the empty clusters.
            dist = sq_norms - 2 * scores
            far = np.argpartition(dist, -empty.size)[-empty.size :]
            far = far[np.argsort(-dist[far], kind="stable")]
            for point, cluster in zip(far, empty):
                sums[labels[point]] -= data[point]
                counts[labels[point]] -= 1
                sums[cluster] = data[point]
                counts[cluster] = 1
        filled = counts > 0
        updated = centroids.copy()
        updated[filled] = sums[filled] / counts[filled, None]
        centroids = normalized(updated) if spherical else updated
        previous = labels
    return np.ascontiguousarray(centroids, dtype=np.float32)


def _faiss_lloyd(data: np.ndarray, start: np.ndarray, n_iter: int, seed: int, spherical: bool) -> np.ndarray:
    """FAISS's Lloyd iterations on a GPU index; returns the final centroids."""
    from selectkit.neighbors.backend import to_gpu

    n, d = data.shape
    k = start.shape[0]
    faiss = import_faiss()
    clustering = faiss.Clustering(d, k)
    clustering.niter = n_iter
    clustering.seed = int(seed)
    clustering.verbose = False
    clustering.spherical = spherical
    clustering.min_points_per_centroid = 1
    clustering.max_points_per_centroid = n // k + 1
    faiss.copy_array_to_vector(start.ravel(), clustering.centroids)
    clustering.train(data, to_gpu(faiss.IndexFlatL2(d)))
    return faiss.vector_float_to_array(clustering.centroids).reshape(k, d).copy()


def _initial_centroids(init: Any, data: np.ndarray, k: int, seed: int, spherical: bool) -> np.ndarray:
    """The given ``[k, d]`` centroids (checked), or ``k`` distinct points sampled with ``seed``."""
    if init is None:
        rows = np.random.default_rng(seed).choice(data.shape[0], k, replace=False)
        return data[np.sort(rows)].copy()
    start = as_float32(init, "init")
    if start.shape != (k, data.shape[1]):
        raise ValueError(f"init has shape {start.shape}; k-means needs [k, d] = {(k, data.shape[1])}")
    return normalized(start) if spherical else start.copy()
