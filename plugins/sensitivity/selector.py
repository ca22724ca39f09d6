"""The `SensitivitySampling` selector: a weighted coreset from k-means clusters of an embedding.

Following "Data-Efficient Learning via Clustering-Based Sensitivity Sampling: Foundation Models and
Beyond": cluster the pool's embeddings with k-means, take each cluster's representative (the item
nearest its centre), and bound every item's loss by its cluster's term plus a multiple of its distance
to the centre, ``v(e) = lipschitz * dist(e, c(e))^power + term(c(e))``. Items are drawn i.i.d. with
probability ``p(e) = (1 - uniform) * v(e) / sum(v) + uniform / n`` and weighted ``1 / (n p(e))``: the
weights have mean 1 under the design, so the weighted subset loss (``task.weight_norm: mean``) is an
unbiased estimate of the pool's mean loss. With ``k + 1/eps^2`` draws the paper bounds the relative
error of that estimate by ``eps`` (plus an additive term in the k-means cost).

``scheme: pivotal`` draws the same number of distinct items instead, with inclusion probabilities
``pi(e)`` proportional to ``p(e)`` (capped at 1) and weights ``m / (n pi(e))`` (Horvitz-Thompson, again
mean 1 under the design), by pivotal sampling (`selectkit.sampling`) along the clusters: items ordered
by cluster (class by class with ``by_label``) and by distance to the centre, so the sample is spread
over clusters and distances as a stratified sample would be, and the estimate varies less.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

from selectkit import sampling
from selectkit.errors import ConfigError
from selectkit.selection import Selection
from selectkit.selector import AnyOf, Boolean, Check, Interval, IsNone, OneOf, Pool, SelectContext, Selector

_KMEANS = 0x4B4D
_DRAW = 0x5344
_ENCODER = 0x454E
_PROBE = 0x5052

EMBEDDINGS = ("features", "model", "encoder")
CLUSTER_TERMS = ("loss", "size")
SCHEMES = ("replacement", "pivotal")

log = logging.getLogger("selectkit.sensitivity")


def _mapping_or_none(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


def _split(k: int, sizes: np.ndarray) -> np.ndarray:
    """``k`` clusters over groups of ``sizes`` items: one each, the rest in proportion to the sizes
    (largest remainders), never more than a group's items."""
    if sizes.size == 1:
        return np.array([min(k, int(sizes[0]))])
    rest = max(k - sizes.size, 0)
    share = rest * sizes / sizes.sum()
    quota = np.floor(share).astype(np.int64)
    left = rest - int(quota.sum())
    if left > 0:
        quota[np.argsort(-(share - quota), kind="stable")[:left]] += 1
    return np.minimum(quota + 1, sizes)


def _fit_lipschitz(probe_losses: np.ndarray, rep_losses: np.ndarray, gaps: np.ndarray) -> float:
    """The least-squares slope (through the origin) of the probes' loss above their representative's
    against their distance term above the representative's; 0 without probes. The caller clamps it
    at 0: a negative slope means the probes' losses do not grow with the distance."""
    denom = float(np.dot(gaps, gaps))
    if probe_losses.size == 0 or not denom > 0:
        return 0.0
    return float(np.dot(probe_losses - rep_losses, gaps)) / denom


class SensitivitySampling(Selector):
    """Clustering-based sensitivity sampling: a weighted coreset whose weighted loss estimates the pool's.

    Args:
        fraction: budget as a share of the pool, in (0, 1]; used when ``size`` and ``eps`` are null.
        size: budget as a number of draws (overrides ``fraction``).
        eps: target relative error in (0, 1): the budget is ``k + ceil(1 / eps^2)`` draws (overrides
            ``fraction``; not together with ``size``).
        k: number of k-means clusters (at most the pool size). Bounded by the budget: with fewer
            draws than ``k`` most clusters would get no draw at all, so ``min(k, draws)`` clusters are
            made (one log line; the manifest's ``k_effective``). Clusters that end up empty (fewer
            distinct points than that) are dropped; the manifest's ``clusters`` says how many remain.
        embedding: where the points clustered come from: ``features`` (raw inputs), ``model`` (the
            model being trained, at the layer ``model.embedding_layer`` names, else the classifier
            head's input), or ``encoder`` (``encoder`` applied to the raw inputs).
        encoder: a Hydra node (``_target_`` and arguments) building a callable or ``nn.Module`` that maps
            a ``[b, d]`` float32 batch of raw inputs to ``[b, d']``; needed by ``embedding: encoder``.
        by_label: cluster each class on its own (``k`` split over the classes in proportion to their
            size, at least one each): a classifier's loss depends on the label as well as on the
            embedding, so an item far from its own class's centres (e.g. one the model confuses with
            another class) gets a large bound. Needs labels.
        cluster_term: the per-cluster term: ``loss`` (the model's loss at each cluster's representative:
            ``k`` forward passes) or ``size`` (every cluster the same share, the k-means sensitivity
            bound; no model evaluation).
        lipschitz: the constant multiplying the distance term (``cluster_term: loss`` only); null fits
            it from the losses of one more random member per cluster (``k`` more forward passes): the
            least-squares slope of their loss above the representative's against their distance term,
            at least 0 (a slope at or below 0 is logged: the bound is then the representatives'
            losses alone; the manifest's ``lipschitz_slope`` is the slope before clamping).
        power: exponent of the distance to the centre: 2 (squared, the k-means cost; the default,
            the better estimate on a trained classifier's losses in docs/benchmarks.md) or 1 (a loss
            Lipschitz in the embedding).
        uniform: share of the sampling mass spread uniformly, in (0, 1]: bounds every weight by
            ``1 / uniform`` and keeps every item drawable.
        n_iter: k-means (Lloyd) iterations at most.
        max_points_per_centroid: k-means trains on at most ``k`` times this many items (a seeded
            sample; every item is still assigned); null trains on all.
        neighbors: `NeighborConfig` fields for the k-means (device, metric ``l2`` or ``cosine``,
            memory cap); null: defaults.
        scheme: ``pivotal`` (the default: distinct items spread over the clusters, fixed size; see
            the module docs) or ``replacement`` (the paper's i.i.d. draws; an item may come twice).
    """

    name = "sensitivity"
    default_schedule = "once"
    random_order = True
    parameter_constraints = {
        "fraction": Interval(0.0, 1.0, low_closed=False),
        "size": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "eps": AnyOf((IsNone(), Interval(0.0, 1.0, low_closed=False, high_closed=False))),
        "k": Interval(1, None, integer=True),
        "embedding": OneOf(EMBEDDINGS),
        "encoder": Check(_mapping_or_none, "a mapping with a _target_, or null"),
        "by_label": Boolean(),
        "cluster_term": OneOf(CLUSTER_TERMS),
        "lipschitz": AnyOf((IsNone(), Interval(0.0, None))),
        "power": OneOf((1, 2)),
        "uniform": Interval(0.0, 1.0, low_closed=False),
        "n_iter": Interval(1, None, integer=True),
        "max_points_per_centroid": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "neighbors": Check(_mapping_or_none, "a mapping of neighbour settings, or null"),
        "scheme": OneOf(SCHEMES),
    }

    def __init__(
        self,
        *,
        fraction: float = 0.1,
        size: int | None = None,
        eps: float | None = None,
        k: int = 100,
        embedding: str = "model",
        encoder: Mapping[str, Any] | None = None,
        by_label: bool = True,
        cluster_term: str = "loss",
        lipschitz: float | None = None,
        power: int = 2,
        uniform: float = 0.1,
        n_iter: int = 20,
        max_points_per_centroid: int | None = 256,
        neighbors: Mapping[str, Any] | None = None,
        scheme: str = "pivotal",
    ) -> None:
        self.fraction = fraction
        self.size = size
        self.eps = eps
        self.k = k
        self.embedding = embedding
        self.encoder = encoder
        self.by_label = by_label
        self.cluster_term = cluster_term
        self.lipschitz = lipschitz
        self.power = power
        self.uniform = uniform
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.neighbors = neighbors
        self.scheme = scheme

    # ------------------------------------------------------------------ declarations
    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        """``embeddings`` (model embedding) or ``features``, ``losses`` for the loss term, ``labels``
        to cluster by label."""
        need = {"embeddings" if self.embedding == "model" else "features"}
        if self.cluster_term == "loss":
            need.add("losses")
        if self.by_label:
            need.add("labels")
        return frozenset(need)

    def _check_params_jointly(self) -> None:
        if self.size is not None and self.eps is not None:
            raise self.param_error("size", "and eps both set the budget; set one of them (or neither, for fraction)")
        if self.embedding == "encoder" and not self.encoder:
            raise self.param_error("encoder", "is needed by embedding=encoder: give a node with a _target_")
        if self.encoder is not None and "_target_" not in self.encoder:
            raise self.param_error("encoder", "needs a _target_ (the callable or nn.Module class to build)")
        if self.encoder is not None and self.embedding != "encoder":
            raise self.param_error("encoder", f"is only used with embedding=encoder (embedding is {self.embedding!r})")
        if self.lipschitz is not None and self.cluster_term != "loss":
            raise self.param_error("lipschitz", "scales the distance against the loss term; with cluster_term=size leave it null")

    def budget(self, n: int) -> int:
        """Draws for a pool of ``n`` items; `ConfigError` naming the setting when it exceeds ``n``."""
        if self.eps is not None:
            m = int(self.k) + math.ceil(1.0 / float(self.eps) ** 2 - 1e-9)
            if m > n:
                raise ConfigError(f"{self.config_path}.eps={self.eps:g} with k={self.k} asks for k + 1/eps^2 = {m} draws, more than the {n} items in the pool")
            return m
        if self.size is not None:
            if int(self.size) > n:
                raise self.param_error("size", f"is {self.size}, larger than the {n} items in the pool")
            return int(self.size)
        return max(1, math.ceil(float(self.fraction) * n - 1e-9))

    # ------------------------------------------------------------------ selection
    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        n = len(pool)
        m = self.budget(n)
        if int(self.k) > n:
            raise self.param_error("k", f"is {self.k}, more clusters than the {n} items in the pool")
        k = min(int(self.k), m)
        if k < int(self.k):
            log.warning("%s.k=%d is more clusters than the %d draws; clustering into %d (k is bounded by the budget)", self.config_path, int(self.k), m, k)
        prior = self._pool_weights(pool)

        start = time.perf_counter()
        points = self._embed(pool, ctx)
        embed_s = time.perf_counter() - start

        start = time.perf_counter()
        assignment, distances, k_used, inertia, iters = self._cluster(points, pool, prior, ctx, k)
        cluster_s = time.perf_counter() - start

        start = time.perf_counter()
        dist = np.maximum(distances.astype(np.float64), 0.0)
        if self.power == 1:
            dist = np.sqrt(dist)
        order = np.lexsort((dist, assignment))
        first = np.ones(n, dtype=bool)
        first[1:] = assignment[order][1:] != assignment[order][:-1]
        reps = order[first]  # one representative per non-empty cluster: the item nearest its centre
        clusters = assignment[reps]
        slot = np.full(k_used, -1, dtype=np.int64)
        slot[clusters] = np.arange(clusters.size)
        member = slot[assignment]
        w_prior = np.ones(n) if prior is None else prior
        mass = np.bincount(member, weights=w_prior, minlength=clusters.size)
        evals = 0
        slope = None
        if self.cluster_term == "loss":
            probes = self._probes(order, first, ctx) if self.lipschitz is None else np.zeros(0, np.int64)
            asked = np.concatenate([reps, probes])
            values = np.asarray(pool.get_at("losses", asked), dtype=np.float64).reshape(-1)
            evals = int(asked.size)
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ConfigError(f"{self.config_path}: the model's loss at a cluster representative is negative, NaN or inf; sensitivity sampling needs finite non-negative losses")
            rep_losses = values[: reps.size]
            term = rep_losses[member]
            if self.lipschitz is not None:
                lam = float(self.lipschitz)
            else:
                slope = _fit_lipschitz(values[reps.size :], rep_losses[member[probes]], dist[probes] - dist[reps[member[probes]]])
                lam = max(0.0, slope)
                if not slope > 0 and probes.size:
                    log.warning(
                        "%s.lipschitz=null: fitted %.3g from %d probes (their losses do not grow with the distance to their cluster's centre), "
                        "so the bound is each representative's loss alone; set %s.lipschitz to weigh the distance",
                        self.config_path, slope, int(probes.size), self.config_path,
                    )
        else:
            term = 1.0 / (clusters.size * mass[member])
            d_total = float(np.dot(w_prior, dist))
            lam = 1.0 / d_total if d_total > 0 else 0.0  # both terms of the k-means bound sum to 1
        v = w_prior * (lam * dist + term)
        uniform = float(self.uniform)
        if not v.sum() > 0:
            uniform = 1.0  # every bound is zero: nothing to prefer
        p = (1.0 - uniform) * v / max(v.sum(), np.finfo(float).tiny) + uniform * w_prior / w_prior.sum()
        score_s = time.perf_counter() - start

        start = time.perf_counter()
        p = p / p.sum()
        if self.scheme == "pivotal":
            pi = sampling.inclusion_probabilities(p, float(m))
            position = np.empty(n, dtype=np.float32)
            position[order] = np.arange(n, dtype=np.float32)  # cluster by cluster, nearest the centre first
            draws = sampling.pivotal(pi, position[:, None], ctx.rng(_DRAW))
            weights = (m / (n * pi[draws])).astype(np.float32)
        else:
            draws = ctx.rng(_DRAW).choice(n, size=m, replace=True, p=p)
            weights = (1.0 / (n * p[draws])).astype(np.float32)
        sample_s = time.perf_counter() - start

        meta: dict[str, Any] = {
            "size": int(draws.size),
            "k": int(self.k),
            "k_effective": int(k),
            "clusters": int(clusters.size),
            "embedding": self.embedding,
            "scheme": self.scheme,
            "dim": int(points.shape[1]),
            "cluster_term": self.cluster_term,
            "lipschitz": lam,
            "lipschitz_slope": slope,
            "k_used": int(k_used),
            "inertia": float(inertia),
            "kmeans_iters": int(iters),
            "model_evals": evals,
            "distinct": int(np.unique(draws).size),
            "max_weight": float(weights.max()),
            "ess": float(weights.sum(dtype=np.float64) ** 2 / np.dot(weights, weights.astype(np.float64))),
            "embed_s": round(embed_s, 6),
            "cluster_s": round(cluster_s, 6),
            "score_s": round(score_s, 6),
            "sample_s": round(sample_s, 6),
        }
        return Selection(draws.astype(np.int64), weights=weights, meta=meta)

    # ------------------------------------------------------------------ pieces
    def _cluster(self, points: np.ndarray, pool: Pool, prior: np.ndarray | None, ctx: SelectContext, k: int) -> tuple[np.ndarray, np.ndarray, int, float, int]:
        """k-means into ``k`` clusters through the neighbour layer, within each class when
        ``by_label`` (``k`` split over the classes): the cluster of every item (ids
        ``0..k_used-1``), its squared distance to the centre, ``k_used``, the inertia and the most
        Lloyd iterations run."""
        from selectkit.neighbors import kmeans

        n = points.shape[0]
        config = self._neighbor_config()
        cap = None if self.max_points_per_centroid is None else int(self.max_points_per_centroid)
        if self.by_label:
            classes, inverse = np.unique(pool.labels, return_inverse=True)
            groups = [np.flatnonzero(inverse == c) for c in range(classes.size)]
        else:
            groups = [np.arange(n)]
        sizes = np.array([g.size for g in groups])
        quota = _split(int(k), sizes)
        assignment = np.empty(n, dtype=np.int64)
        distances = np.empty(n, dtype=np.float32)
        offset, inertia, iters = 0, 0.0, 0
        for g, (members, k_g) in enumerate(zip(groups, quota)):
            seed = int(ctx.rng(_KMEANS, g).integers(2**31))
            w = None if prior is None else prior[members]
            km = kmeans(points[members], int(k_g), n_iter=int(self.n_iter), seed=seed, config=config, max_points_per_centroid=cap, sample_weight=w)
            assignment[members] = offset + km.assignment
            distances[members] = km.distances
            offset += int(k_g)
            inertia += float(km.inertia)
            iters = max(iters, int(km.n_iter))
        return assignment, distances, offset, inertia, iters

    def _probes(self, order: np.ndarray, first: np.ndarray, ctx: SelectContext) -> np.ndarray:
        """One random member other than the representative from every cluster that has one: the
        items whose losses fit ``lipschitz`` when it is null."""
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, order.size))
        has = sizes > 1
        offsets = 1 + (ctx.rng(_PROBE).random(int(has.sum())) * (sizes[has] - 1)).astype(np.int64)
        return order[starts[has] + offsets]

    def _pool_weights(self, pool: Pool) -> np.ndarray | None:
        """The weights an earlier stage gave the pool (float64), checked; None when unweighted."""
        if pool.weights is None:
            return None
        w = np.asarray(pool.weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != len(pool) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ConfigError(f"{self.config_path}: the weights from the stages before it must be finite and positive, one per item; a stage gave zero, negative or NaN weights")
        return w

    def _embed(self, pool: Pool, ctx: SelectContext) -> np.ndarray:
        """The points to cluster, ``[n, d]`` float32, checked for NaN and constant rows."""
        if self.embedding == "model":
            points = pool.embeddings
            source = "the model's embeddings"
        elif self.embedding == "features":
            points = pool.features
            source = "the raw features"
        else:
            points = self._encode(pool.features, ctx)
            source = "the encoder's outputs"
        points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(len(pool), -1))
        bad = ~np.isfinite(points).all(axis=1)
        if bad.any():
            raise ConfigError(f"{self.config_path}.embedding={self.embedding}: {int(bad.sum())} of {len(pool)} rows of {source} are NaN or inf (first: pool item {int(np.argmax(bad))})")
        if points.shape[0] > 1 and not np.any(points.max(axis=0) > points.min(axis=0)):
            raise ConfigError(f"{self.config_path}.embedding={self.embedding}: {source} are constant (every row the same), so clusters and distances say nothing; use another embedding")
        return points

    def _encode(self, features: np.ndarray, ctx: SelectContext) -> np.ndarray:
        """``encoder`` built (seeded by the run, the same at every epoch) and applied in batches."""
        import torch

        from selectkit.train import instantiate_node
        from omegaconf import OmegaConf

        setting = f"{self.config_path}.encoder"
        features = np.asarray(features, dtype=np.float32).reshape(features.shape[0], -1)
        with torch.random.fork_rng():
            torch.manual_seed(int(ctx.rng(_ENCODER, per_epoch=False).integers(2**31)))
            encoder = instantiate_node(OmegaConf.create(dict(self.encoder)), setting)
        if not callable(encoder):
            raise self.param_error("encoder", f"built a {type(encoder).__name__}, which cannot be called on a batch")
        is_module = isinstance(encoder, torch.nn.Module)
        if is_module:
            encoder.eval()
        out = []
        with torch.no_grad():
            for start in range(0, features.shape[0], 4096):
                batch = features[start : start + 4096]
                try:
                    y = encoder(torch.from_numpy(batch)) if is_module else encoder(batch)
                except Exception as err:  # noqa: BLE001 - user code: report it on one line
                    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise self.param_error("encoder", f"failed on a [{batch.shape[0]}, {batch.shape[1]}] batch of raw inputs: {line}") from None
                if isinstance(y, torch.Tensor):
                    y = y.detach().float().cpu().numpy()
                y = np.asarray(y, dtype=np.float32)
                if y.ndim != 2 or y.shape[0] != batch.shape[0]:
                    raise self.param_error("encoder", f"must map a [b, d] batch to [b, d'] rows; got shape {tuple(y.shape)} for {batch.shape[0]} rows")
                out.append(y)
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    def _neighbor_config(self) -> Any:
        from selectkit.neighbors import NeighborConfig

        fields = {str(k): v for k, v in dict(self.neighbors or {}).items() if not str(k).startswith("_")}
        unknown = sorted(set(fields) - set(NeighborConfig.__dataclass_fields__))
        if unknown:
            raise self.param_error(f"neighbors.{unknown[0]}", "is not a neighbour setting")
        try:
            config = NeighborConfig(**fields)
        except ConfigError as err:
            raise ConfigError(f"{self.config_path}.{err}") from None
        if config.metric == "ip":
            raise ConfigError(f"{self.config_path}.neighbors.metric='ip' has no k-means objective; use l2 or cosine")
        return config
