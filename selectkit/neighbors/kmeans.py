"""k-means on FAISS's Lloyd iterations, with the final assignment made block-wise by the neighbour layer."""

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

    Runs ``n_iter`` FAISS iterations (assign, then update) from ``init`` (``[k, d]`` initial
    centroids) or from ``k`` distinct points drawn with ``seed``. Each point is then assigned to its
    nearest final centroid through the layer, and ``inertia`` is the sum of squared distances to it,
    as scikit-learn's ``KMeans(algorithm='lloyd', max_iter=n_iter, tol=0)`` reports it.
    ``config.metric='cosine'`` runs spherical k-means on normalised copies (inertia then
    measured on those). All points train every iteration unless ``max_points_per_centroid`` asks FAISS
    to subsample. ``config.device`` picks CPU or GPU; its ``backend`` is not used (assignment is exact).
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

    faiss = import_faiss()
    clustering = faiss.Clustering(d, k)
    clustering.niter = n_iter
    clustering.seed = int(seed)
    clustering.verbose = False
    clustering.spherical = config.metric == "cosine"
    clustering.min_points_per_centroid = 1
    clustering.max_points_per_centroid = int(max_points_per_centroid) if max_points_per_centroid else n // k + 1
    index = faiss.IndexFlatL2(d)
    if use_gpu(config):
        from selectkit.neighbors.backend import to_gpu

        index = to_gpu(index)
    faiss.copy_array_to_vector(start.ravel(), clustering.centroids)
    clustering.train(data, index)
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, d).copy()

    from selectkit.neighbors.search import NeighborIndex

    dist, idx = NeighborIndex(n_neighbors=1, config=exact).fit(centroids).search(data, 1)
    return centroids, idx[:, 0].copy(), float(dist[:, 0].sum(dtype=np.float64))


def _initial_centroids(init: Any, data: np.ndarray, k: int, seed: int, spherical: bool) -> np.ndarray:
    """The given ``[k, d]`` centroids (checked), or ``k`` distinct points sampled with ``seed``."""
    if init is None:
        rows = np.random.default_rng(seed).choice(data.shape[0], k, replace=False)
        return data[np.sort(rows)].copy()
    start = as_float32(init, "init")
    if start.shape != (k, data.shape[1]):
        raise ValueError(f"init has shape {start.shape}; k-means needs [k, d] = {(k, data.shape[1])}")
    return normalized(start) if spherical else start.copy()
