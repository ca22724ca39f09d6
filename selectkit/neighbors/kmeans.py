"""k-means: Lloyd's iterations with every assignment made by the neighbour layer's exact search.

On CPU the iterations run in `selectkit.neighbors.lloyd` (one compiled parallel loop per
iteration, BLAS tiles against the centroids, no ``n x k`` distance matrix beyond one small tile per
block); a cluster left empty takes the point farthest from its centroid, as scikit-learn's Lloyd
does, so the objective matches scikit-learn's at equal iterations. Iterations stop early when no
assignment changes. On a GPU FAISS's own Lloyd runs instead. Sample weights make every centroid the
weighted mean of its points and weight the inertia.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from selectkit.errors import ConfigError
from selectkit.neighbors.backend import import_faiss, use_gpu
from selectkit.neighbors.config import NeighborConfig, resolve
from selectkit.neighbors.inputs import as_float32, l2_shift, normalized, shape_of, shares_input, shifted
from selectkit.neighbors.lloyd import lloyd, partial_sums_bytes
from selectkit.neighbors.memory import F32, GB, I64, MemoryCapExceeded, estimate_memory_bytes


@dataclass(frozen=True)
class KMeansResult:
    """What `kmeans` returns.

    Attributes:
        centroids: float32 ``[k, d]`` final centres (unit norm for ``metric='cosine'``).
        assignment: int64 ``[n]`` each point's nearest final centre.
        distances: float32 ``[n]`` each point's squared L2 distance to that centre (for 'cosine',
            between the L2-normalised point and centre, i.e. ``2 - 2 * cosine``).
        inertia: sum of ``distances`` (weighted by ``sample_weight`` when given), in float64.
        n_iter: Lloyd iterations run (updates made; fewer than asked when the assignment settled).
    """

    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray
    inertia: float
    n_iter: int


def kmeans(
    x: Any,
    k: int,
    n_iter: int = 20,
    seed: int = 0,
    init: Any = None,
    config: NeighborConfig | None = None,
    max_points_per_centroid: int | None = None,
    sample_weight: Any = None,
) -> KMeansResult:
    """Lloyd's k-means over ``x`` ``[n, d]``; see `KMeansResult` for what it returns.

    Runs up to ``n_iter`` iterations (assign, then update) from ``init`` (``[k, d]`` initial
    centroids) or from ``k`` distinct points drawn with ``seed``, stopping early once no assignment
    changes. Each point is then assigned to its nearest final centroid through the layer, and
    ``inertia`` is the sum of squared distances to it, as scikit-learn's
    ``KMeans(algorithm='lloyd', max_iter=n_iter, tol=0)`` reports it. ``sample_weight`` (``[n]``,
    non-negative, finite, not all zero) runs weighted Lloyd: each centroid is the weighted mean of
    its points and the inertia the weighted sum; integer weights give the same result as repeating
    each row that many times. ``config.metric='cosine'`` runs spherical k-means on normalised
    copies (centroids renormalised after each update, inertia measured on the normalised points).
    All points train every iteration unless
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
    weights = None if sample_weight is None else _check_weights(sample_weight, n)
    exact = NeighborConfig(**{**vars(config), "backend": "flat", "metric": "l2"})
    need = n * d * F32 + estimate_memory_bytes(k, n, d, 1, exact) + n * (F32 + I64) + (0 if weights is None else n * 2 * I64)
    need += partial_sums_bytes(n, k, d)
    if need > config.memory_cap_gb * GB:
        raise MemoryCapExceeded(
            f"neighbors.memory_cap_gb={config.memory_cap_gb:g} is below the {need / GB:.2f} GB this k-means needs; "
            "raise neighbors.memory_cap_gb"
        )
    data = as_float32(x, "x")
    if config.metric == "cosine":
        data = normalized(data)
    start = _initial_centroids(init, data, k, seed, config.metric == "cosine")
    # L2 iterations run on points centred on their mean where that cuts float32 rounding (`l2_shift`)
    shift = None if config.metric == "cosine" else l2_shift(data)
    if shift is not None:
        data = shifted(data, shift, in_place=not shares_input(data, x))
        start = shifted(start, shift, in_place=not shares_input(start, init))

    train, train_weights = data, weights
    if max_points_per_centroid and n > k * max_points_per_centroid:
        rows = np.sort(np.random.default_rng([seed, 1]).choice(n, k * int(max_points_per_centroid), replace=False))
        train = data[rows]
        train_weights = None if weights is None else weights[rows]
    spherical = config.metric == "cosine"
    if use_gpu(config):
        centroids, done = _faiss_lloyd(train, start, n_iter, seed, spherical, train_weights)
    else:
        centroids, done = lloyd(train, start, n_iter, spherical, train_weights, exact)

    from selectkit.neighbors.search import NeighborIndex

    dist, idx = NeighborIndex(n_neighbors=1, config=exact).fit(centroids).search(data, 1)
    distances = np.ascontiguousarray(dist[:, 0])
    inertia = distances.sum(dtype=np.float64) if weights is None else np.dot(distances.astype(np.float64), weights)
    if shift is not None:
        centroids = shifted(centroids, -shift, in_place=True)
    return KMeansResult(centroids, idx[:, 0].copy(), distances, float(inertia), int(done))


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` as float64 ``[n]``: numeric, finite, non-negative, with a positive sum."""
    if hasattr(sample_weight, "detach") and hasattr(sample_weight, "cpu"):
        sample_weight = sample_weight.detach().cpu().numpy()
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ConfigError(f"sample_weight must be numeric, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ConfigError(f"sample_weight has shape {w.shape}; it needs one weight per point ({n},)")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ConfigError(f"sample_weight must be finite: {int((~np.isfinite(w)).sum())} weights are NaN or inf")
    if (w < 0).any():
        raise ConfigError(f"sample_weight must be non-negative: {int((w < 0).sum())} weights are below 0 (first: point {int(np.argmax(w < 0))})")
    if not w.sum() > 0:
        raise ConfigError("sample_weight must not be all zero: no point would pull any centroid")
    return np.ascontiguousarray(w)


def _faiss_lloyd(
    data: np.ndarray, start: np.ndarray, n_iter: int, seed: int, spherical: bool, weights: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """FAISS's Lloyd iterations on a GPU index: the final centroids and the iterations run."""
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
    if weights is None:
        clustering.train(data, to_gpu(faiss.IndexFlatL2(d)))
    else:
        clustering.train(data, to_gpu(faiss.IndexFlatL2(d)), weights.astype(np.float32))
    return faiss.vector_float_to_array(clustering.centroids).reshape(k, d).copy(), int(n_iter)


def _initial_centroids(init: Any, data: np.ndarray, k: int, seed: int, spherical: bool) -> np.ndarray:
    """The given ``[k, d]`` centroids (checked), or ``k`` distinct points sampled with ``seed``."""
    if init is None:
        rows = np.random.default_rng(seed).choice(data.shape[0], k, replace=False)
        return data[np.sort(rows)].copy()
    start = as_float32(init, "init")
    if start.shape != (k, data.shape[1]):
        raise ValueError(f"init has shape {start.shape}; k-means needs [k, d] = {(k, data.shape[1])}")
    return normalized(start) if spherical else start.copy()
