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
mean 1 under the design), by pivotal sampling (`selectkit_plugins.sensitivity.pivotal`) along the
clusters: items ordered by cluster (class by class with ``by_label``) and by distance to the centre,
so the sample is spread over clusters and distances as a stratified sample would be, and the
estimate varies less.

The selector is sharded (`selectkit.Selector.sharded`): each rank embeds and checks its own shard of
the pool (``pool.local``), k-means runs over the shards (`selectkit_plugins.sensitivity.clusters`:
k-means|| and Lloyd's sums along the pool's block tree, class by class with ``by_label``), the cluster
sizes, the representatives and the probes are combined over the ranks (``O(k)`` per rank), the losses
at the ``k`` (or ``2k``) items are computed on every rank (``pool.get_at``), the bounds are local and
their totals block-ordered sums (`selectkit.distributed.Comm.block_sum`). The draws are
`selectkit.distributed.sample_with_replacement` (i.i.d.) or pivotal sampling along the global cluster
order, keyed by pool position and by tree node, so the coreset and its weights are the same at world
size 1, 2 or 4. No rank holds more than its shard and ``O(k d + m)`` (and, for a pivotal sort, about
twice its shard's ``(cluster, distance, position, pi)`` records).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping

import numpy as np

from selectkit.distributed import Comm, ShardedArray, inclusion_probabilities, keyed_uniform, sample_with_replacement
from selectkit.errors import ConfigError
from selectkit.selection import Selection
from selectkit.selector import AnyOf, Boolean, Check, Interval, IsNone, OneOf, Pool, SelectContext, Selector
from selectkit_plugins.sensitivity.clusters import Clusters, cluster_groups, cluster_minimum, pool_sum
from selectkit_plugins.sensitivity.pivotal import sharded_pivotal

_KMEANS = 0x4B4D
_DRAW = 0x5344
_ENCODER = 0x454E
_PROBE = 0x5052
_TRAIN = 0x5452
_ENCODE_ROWS = 4096

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
        max_points_per_centroid: k-means trains on at most ``k`` times this many items (per class
            with ``by_label``: those with the smallest uniforms keyed by pool position; every item is
            still assigned to its nearest centre); null trains on all. The weights of earlier stages
            do not weigh the k-means (`selectkit.distributed.sharded_kmeans` has no item weights);
            they weigh the bound and the sampling.
        neighbors: `NeighborConfig` fields for the k-means (device, metric ``l2`` or ``cosine``,
            memory cap); null: defaults.
        scheme: ``pivotal`` (the default: distinct items spread over the clusters, fixed size; see
            the module docs) or ``replacement`` (the paper's i.i.d. draws; an item may come twice).
    """

    name = "sensitivity"
    default_schedule = "once"
    sharded = True
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
        comm = pool.collectives()
        layout = pool.layout
        positions = pool.local_positions
        prior = self._pool_weights(pool, comm)

        start = time.perf_counter()
        points = self._embed(pool, ctx, comm)
        embed_s = time.perf_counter() - start

        start = time.perf_counter()
        clusters = self._cluster(points, pool, comm, ctx, k)
        cluster_s = time.perf_counter() - start

        start = time.perf_counter()
        dist = np.maximum(clusters.distances.astype(np.float64), 0.0)
        if self.power == 1:
            dist = np.sqrt(dist)
        counts = comm.all_sum(np.bincount(clusters.assignment, minlength=clusters.k_used))
        kept = np.flatnonzero(counts > 0)  # clusters k-means left empty are dropped
        slot = np.full(clusters.k_used, -1, dtype=np.int64)
        slot[kept] = np.arange(kept.size)
        member = slot[clusters.assignment]
        sizes = counts[kept]
        # one representative per cluster: the item nearest its centre (ties: the lowest position)
        reps, rep_dist = cluster_minimum(comm, member, dist, positions, kept.size, dist)
        w_prior = np.ones(layout.n_local) if prior is None else prior
        evals = 0
        slope = None
        if self.cluster_term == "loss":
            probes, probe_slots, probe_dist = self._probes(comm, ctx, member, dist, positions, reps, sizes)
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
                slope = _fit_lipschitz(values[reps.size :], rep_losses[probe_slots], probe_dist - rep_dist[probe_slots])
                lam = max(0.0, slope)
                if not slope > 0 and probes.size:
                    log.warning(
                        "%s.lipschitz=null: fitted %.3g from %d probes (their losses do not grow with the distance to their cluster's centre), "
                        "so the bound is each representative's loss alone; set %s.lipschitz to weigh the distance",
                        self.config_path, slope, int(probes.size), self.config_path,
                    )
        else:
            if prior is None:
                mass = sizes.astype(np.float64)
            else:
                mass = comm.block_sum(np.array([np.bincount(member[rows], weights=prior[rows], minlength=kept.size) for _, rows in layout.local_blocks()]).reshape(-1, kept.size), layout)
            term = 1.0 / (kept.size * mass[member])
            d_total = pool_sum(comm, layout, w_prior * dist)
            lam = 1.0 / d_total if d_total > 0 else 0.0  # both terms of the k-means bound sum to 1
        v = w_prior * (lam * dist + term)
        v_total = pool_sum(comm, layout, v)
        w_total = float(n) if prior is None else pool_sum(comm, layout, prior)
        uniform = float(self.uniform)
        if not v_total > 0:
            uniform = 1.0  # every bound is zero: nothing to prefer
        p = (1.0 - uniform) * v / max(v_total, np.finfo(float).tiny) + uniform * w_prior / w_total
        p = p / pool_sum(comm, layout, p)
        score_s = time.perf_counter() - start

        start = time.perf_counter()
        if self.scheme == "pivotal":
            pi = inclusion_probabilities(comm, ShardedArray(p, layout), float(m))
            # cluster by cluster, nearest the centre first
            draws, pi_drawn = sharded_pivotal(comm, ctx.key(_DRAW), pi, member, dist, positions)
            weights = (m / (n * pi_drawn)).astype(np.float32)
        else:
            local = sample_with_replacement(comm, ctx.key(_DRAW), ShardedArray(p, layout), m)
            drawn = np.empty(local.size, dtype=[("pos", "i8"), ("weight", "f4")])
            drawn["pos"], drawn["weight"] = local, 1.0 / (n * p[local - layout.lo])
            every = np.concatenate(comm.all_gather(drawn, "sensitivity: draws"))
            draws, weights = every["pos"], every["weight"]
        sample_s = time.perf_counter() - start

        meta: dict[str, Any] = {
            "size": int(draws.size),
            "k": int(self.k),
            "k_effective": int(k),
            "clusters": int(kept.size),
            "embedding": self.embedding,
            "scheme": self.scheme,
            "dim": int(points.local.shape[1]),
            "cluster_term": self.cluster_term,
            "lipschitz": lam,
            "lipschitz_slope": slope,
            "k_used": int(clusters.k_used),
            "inertia": float(clusters.inertia),
            "kmeans_iters": int(clusters.iters),
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
    def _cluster(self, points: ShardedArray, pool: Pool, comm: Comm, ctx: SelectContext, k: int) -> Clusters:
        """k-means into ``k`` clusters over the shards (`cluster_groups`), within each class when
        ``by_label`` (``k`` split over the classes by their sizes, counted over every rank)."""
        if self.by_label:
            labels = pool.local("labels").local
            classes = np.unique(np.concatenate(comm.all_gather(np.unique(labels), "sensitivity: classes")))
            group = np.searchsorted(classes, labels).astype(np.int64)
        else:
            classes, group = np.zeros(1), np.zeros(points.layout.n_local, dtype=np.int64)
        sizes = comm.all_sum(np.bincount(group, minlength=classes.size))
        quota = _split(int(k), sizes)
        seeds = [int(ctx.rng(_KMEANS, g).integers(2**31)) for g in range(quota.size)]
        cap = None if self.max_points_per_centroid is None else int(self.max_points_per_centroid)
        return cluster_groups(comm, points, group, quota, seeds, n_iter=int(self.n_iter), config=self._neighbor_config(), cap=cap, key=ctx.key(_TRAIN))

    def _probes(
        self, comm: Comm, ctx: SelectContext, member: np.ndarray, dist: np.ndarray, positions: np.ndarray, reps: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One random member other than the representative from every cluster that has one (the one
        of the smallest keyed uniform): the items whose losses fit ``lipschitz`` when it is null.
        Their positions, their clusters and their distance terms; none when ``lipschitz`` is set."""
        if self.lipschitz is not None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        others = positions != reps[member]
        u = keyed_uniform(ctx.key(_PROBE), positions[others])
        probes, probe_dist = cluster_minimum(comm, member[others], u, positions[others], sizes.size, dist[others])
        has = np.flatnonzero(sizes > 1)
        return probes[has], has, probe_dist[has]

    def _pool_weights(self, pool: Pool, comm: Comm) -> np.ndarray | None:
        """This shard's part of the weights an earlier stage gave the pool (float64), checked on every
        rank; None when unweighted."""
        if pool.weights is None:
            return None
        w = np.asarray(pool.weights, dtype=np.float64).reshape(-1)
        local = w[pool.layout.lo : pool.layout.hi] if w.shape[0] == len(pool) else w[:0]
        bad = int(comm.all_sum(int(w.shape[0] != len(pool)) + int(np.count_nonzero(~(np.isfinite(local) & (local > 0))))))
        if bad:
            raise ConfigError(f"{self.config_path}: the weights from the stages before it must be finite and positive, one per item; a stage gave zero, negative or NaN weights")
        return local

    def _embed(self, pool: Pool, ctx: SelectContext, comm: Comm) -> ShardedArray:
        """This shard's points to cluster, ``[n_local, d]`` float32, checked over every rank for NaN
        and for constant rows."""
        if self.embedding == "model":
            points = pool.local("embeddings").local
            source = "the model's embeddings"
        elif self.embedding == "features":
            points = pool.local("features").local
            source = "the raw features"
        else:
            points = comm.checked(lambda: self._encode(pool.local("features"), ctx), f"{self.config_path}.encoder")
            source = "the encoder's outputs"
        n_rows = points.shape[0]
        width = int(comm.all_max(int(np.prod(points.shape[1:], dtype=np.int64)) if n_rows else -1))
        points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(n_rows, width))
        bad = np.concatenate([np.zeros(0, np.int64)] + [rows.start + np.flatnonzero(~np.isfinite(points[rows]).all(axis=1)) for _, rows in pool.layout.local_blocks()])
        count = int(comm.all_sum(int(bad.size)))
        if count:
            first = int(comm.all_min(int(pool.layout.lo + bad[0]) if bad.size else len(pool)))
            raise ConfigError(f"{self.config_path}.embedding={self.embedding}: {count} of {len(pool)} rows of {source} are NaN or inf (first: pool item {first})")
        high = comm.all_max(points.max(axis=0) if n_rows else np.full(width, -np.inf))
        low = comm.all_min(points.min(axis=0) if n_rows else np.full(width, np.inf))
        if len(pool) > 1 and not np.any(high > low):
            raise ConfigError(f"{self.config_path}.embedding={self.embedding}: {source} are constant (every row the same), so clusters and distances say nothing; use another embedding")
        return ShardedArray(points, pool.layout)

    def _encode(self, features: ShardedArray, ctx: SelectContext) -> np.ndarray:
        """``encoder`` built (seeded by the run, the same at every epoch and on every rank) and applied
        to this shard's raw inputs in batches cut at the pool's logical blocks (so a row meets the
        same batch at every world size)."""
        import torch

        from selectkit.train import instantiate_node
        from omegaconf import OmegaConf

        setting = f"{self.config_path}.encoder"
        rows = np.asarray(features.local, dtype=np.float32)
        rows = rows.reshape(rows.shape[0], int(np.prod(rows.shape[1:], dtype=np.int64)))
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
            for _, block in features.layout.local_blocks():
                for start in range(block.start, block.stop, _ENCODE_ROWS):
                    batch = np.ascontiguousarray(rows[start : min(start + _ENCODE_ROWS, block.stop)])
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
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

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
