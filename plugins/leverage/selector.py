"""The ``leverage`` selector: leverage-score importance sampling of a pool's features or embeddings."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Selection
from selectkit.selector import AnyOf, Interval, IsNone, OneOf, Pool, SelectContext, Selector
from selectkit import distributed, sampling
from selectkit.distributed import ShardedArray
from selectkit_plugins.leverage.scores import Blocks, NonFiniteError, ShardBlocks, eigh, exact_scores, sketch, sketch_error_floor, square_sum
from selectkit_plugins.leverage.shards import block_pivotal

_DRAW = 0x4C56
_TREE = 0x4C54
_SKETCH = 0x4C53

#: ``method: auto`` tries a sketch from this many feature columns on (below it exact scores are cheaper).
SKETCH_FROM_D = 256


def _budget_ok(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return value >= 1
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and 0 < value <= 1


class _BudgetRule(Interval):
    """A fraction in (0, 1] (a float) or a count >= 1 (an integer)."""

    def ok(self, value: Any) -> bool:
        return _budget_ok(value)

    def describe(self) -> str:
        return "a fraction in (0, 1] (a float) or a count >= 1 (an integer)"


class LeverageSampling(Selector):
    """Importance sampling by (ridge, root) leverage scores, independent or pivotal, with weights.

    The scores come from the pool's ``features`` (read block by block, so a memory-mapped pool is never
    held whole) or ``embeddings``; rows are scaled by the square root of the pool's weights when an
    earlier stage weighted them. Each item's sampling weight is its score, mixed with uniform by
    ``uniform_mix``. The selection's weights are importance weights with mean 1 under the design
    (``1 / (n p_i)`` for draws with replacement, ``m / (n pi_i)`` for inclusion probabilities ``pi``).

    Args:
        budget: a fraction of the pool (float in (0, 1]) or a count (integer); for ``bernoulli`` it is
            the expected size, for ``replacement`` the number of draws.
        scheme: ``pivotal`` (fixed size, spatially spread, as in "Improved Active Learning via Dependent
            Leverage Score Sampling"), ``bernoulli`` (independent inclusions) or ``replacement``
            (independent draws, repeats possible).
        score: ``leverage``, ``ridge`` (ridge leverage scores, see ``ridge``) or ``root`` (scores
            ``tau_i^(p/2)``: root leverage for ``p = 1``, the l_p variant of "Sharper Bounds for l_p
            Sensitivity Sampling").
        method: ``exact`` (blocked Cholesky-QR with a conditioning check and float64 fallback),
            ``sketch`` (CountSketch plus a Gaussian projection, error estimate in the metadata) or
            ``auto``: from 256 columns on, when the sketch has fewer rows than the pool and could state
            an error within ``sketch_tol`` (`sketch_error_floor`), the sketch pass runs and its scores
            are kept if its own error estimate is at most ``sketch_tol``; otherwise exact scores (the
            metadata's ``method`` says which ran, ``auto`` why).
        source: ``features`` (raw inputs) or ``embeddings`` (the model's).
        ridge: for ``score: ridge``, ``lambda`` as a multiple of the mean eigenvalue of ``A^T A``
            (its trace over d), > 0.
        p: exponent of ``score: root``, in [1, 2].
        sketch_size: rows of the CountSketch (``method: sketch``); null: ``min(n, 16 d)``. At least the
            number of columns, at most the pool's size.
        projection: columns of the Gaussian projection of the sketched scores; null: none.
        sketch_tol: ``method: auto`` keeps sketched scores only when their per-row relative error
            estimate (``rel_error_estimate``) is at most this, > 0; else it runs exact.
        uniform_mix: share of the sampling weight spread uniformly, in [0, 1).
        tree_dims: principal directions the pivotal tree is built in.
        block_rows: rows read per block; null: 64 MiB of float32 per block.
    """

    name = "leverage"
    default_schedule = "once"
    sharded = True
    parameter_constraints = {
        "budget": _BudgetRule(),
        "scheme": OneOf(("pivotal", "bernoulli", "replacement")),
        "score": OneOf(("leverage", "ridge", "root")),
        "method": OneOf(("exact", "sketch", "auto")),
        "source": OneOf(("features", "embeddings")),
        "ridge": Interval(0.0, None, low_closed=False),
        "p": Interval(1.0, 2.0),
        "sketch_size": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "projection": AnyOf((IsNone(), Interval(1, None, integer=True))),
        "sketch_tol": Interval(0.0, None, low_closed=False),
        "uniform_mix": Interval(0.0, 1.0, high_closed=False),
        "tree_dims": Interval(1, None, integer=True),
        "block_rows": AnyOf((IsNone(), Interval(1, None, integer=True))),
    }

    def __init__(
        self,
        *,
        budget: Any = 0.1,
        scheme: str = "pivotal",
        score: str = "leverage",
        method: str = "auto",
        source: str = "features",
        ridge: float = 1e-3,
        p: float = 1.0,
        sketch_size: int | None = None,
        projection: int | None = None,
        sketch_tol: float = 0.05,
        uniform_mix: float = 0.0,
        tree_dims: int = 8,
        block_rows: int | None = None,
    ) -> None:
        self.budget = budget
        self.scheme = scheme
        self.score = score
        self.method = method
        self.source = source
        self.ridge = ridge
        self.p = p
        self.sketch_size = sketch_size
        self.projection = projection
        self.sketch_tol = sketch_tol
        self.uniform_mix = uniform_mix
        self.tree_dims = tree_dims
        self.block_rows = block_rows

    @property
    def requires(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({self.source})

    # ------------------------------------------------------------------ pieces
    def size(self, n: int) -> int:
        """The budget as a count for a pool of ``n`` items; `ConfigError` when larger than the pool."""
        if isinstance(self.budget, (int, np.integer)) and not isinstance(self.budget, bool):
            m = int(self.budget)
            if m > n:
                raise self.param_error("budget", f"is {m}, larger than the pool of {n} items; lower it or give a fraction")
            return m
        return int(min(n, max(1, math.ceil(float(self.budget) * n - 1e-9))))

    def _blocks(self, pool: Pool) -> ShardBlocks:
        """This rank's rows of the source, read logical block by logical block (never whole), scaled
        by the square root of the pool's weights."""
        n = len(pool)
        comm, layout = pool.collectives(), pool.layout
        scale = None
        if pool.weights is not None:
            w = np.asarray(pool.weights, dtype=np.float64)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise ConfigError(f"{self.config_path}: the pool's weights (from the stage before) must be {n} finite positive numbers")
            scale = np.sqrt(w)
        if self.source == "embeddings":
            emb = np.asarray(pool.local("embeddings").local)
            local = emb.reshape(emb.shape[0], -1)

            def read(start: int, stop: int) -> np.ndarray:
                return local[start - layout.lo : stop - layout.lo]

        else:

            def read(start: int, stop: int) -> np.ndarray:
                return pool.get_at(self.source, np.arange(start, stop, dtype=np.int64))

        d_local = int(np.prod(np.shape(read(layout.lo, layout.lo + 1))[1:], dtype=np.int64)) if layout.n_local else 0
        d = int(comm.all_max(d_local))
        parts = []
        for b, _ in layout.local_blocks():
            lo, hi = layout.block_bounds(b)
            rows = Blocks(lambda s, e, lo=lo: read(lo + s, lo + e), hi - lo, d, None if scale is None else scale[lo:hi], self.block_rows)
            parts.append((b, lo, rows))
        return ShardBlocks(parts, n, d, comm, layout, Blocks(read, 0, d, None, self.block_rows).rows)

    def _scores(self, blocks: ShardBlocks, ctx: SelectContext):
        d, n = blocks.d, blocks.n
        k = self.sketch_size if self.sketch_size is not None else min(n, 16 * d)
        auto = None
        if self.method == "auto":
            if d < SKETCH_FROM_D:
                auto = f"exact: fewer than {SKETCH_FROM_D} columns"
            elif self.sketch_size is None and k >= n:
                auto = "exact: a sketch would have as many rows as the pool"
        sketched = self.method == "sketch" or (self.method == "auto" and auto is None)
        ridge = 0.0
        if self.score == "ridge":
            # lambda relative to the mean eigenvalue: a first pass reads the trace (cheap next to the rest)
            trace = square_sum(blocks)
            if not math.isfinite(trace):
                raise self.param_error("source", f"is {self.source!r}, whose values include NaN or infinity; clean them or use another source")
            ridge = self.ridge * trace / max(d, 1)
        try:
            if not sketched:
                scores = exact_scores(blocks, ridge=ridge)
                if auto is not None:
                    scores.meta["auto"] = auto
                return scores
            if k < d:
                raise self.param_error("sketch_size", f"is {k}, fewer rows than the {d} columns it must embed; give at least {d}")
            if k > n:
                raise self.param_error("sketch_size", f"is {k}, more rows than the pool's {n} items; give at most {n}")
            if self.projection is not None and self.projection > d:
                raise self.param_error("projection", f"is {self.projection}, more than the {d} columns; give at most {d} or null")
            tol = float(self.sketch_tol)
            floor = sketch_error_floor(d, int(k), self.projection)
            if self.method == "auto" and floor > tol:
                scores = exact_scores(blocks, ridge=ridge)
                scores.meta.update({"auto": f"exact: a sketch of {k} rows cannot state an error within sketch_tol", "sketch_error_floor": round(floor, 6), "sketch_tol": tol})
                return scores
            sk = sketch(blocks, sketch_size=int(k), projection=self.projection, key=ctx.key(_SKETCH, per_epoch=False), ridge=ridge)
            if self.method == "sketch":
                return sk.scores(blocks)
            facts = {"sketch_error_estimate": sk.meta["rel_error_estimate"], "sketch_tol": tol, "sketch_pass_s": sk.meta["seconds"]}
            if sk.estimate <= tol:
                scores = sk.scores(blocks)
                facts["auto"] = "sketch: its error estimate is within sketch_tol"
            else:
                scores = exact_scores(blocks, ridge=ridge)
                facts["auto"] = "exact: the sketch's error estimate is above sketch_tol"
            scores.meta.update(facts)
            return scores
        except NonFiniteError:
            raise self.param_error("source", f"is {self.source!r}, whose values include NaN or infinity; clean them or use another source") from None

    def _coords(self, blocks: ShardBlocks, scores) -> np.ndarray:
        """Coordinates of this rank's items on the top ``tree_dims`` principal directions of the
        whole pool (one block pass)."""
        n = blocks.n
        mean = scores.colsum / max(n, 1)
        cov = scores.gram / max(n, 1) - np.outer(mean, mean)
        lam, vec = eigh(cov)
        t = min(int(self.tree_dims), blocks.d)
        top = np.ascontiguousarray(vec[:, ::-1][:, :t], dtype=np.float32)
        mu = mean.astype(np.float32)

        def project(b: Blocks, _start: int) -> np.ndarray:
            return np.concatenate([(x.numpy() - mu) @ top for _, x in b]) if b.n else np.zeros((0, t), dtype=np.float32)

        return blocks.rows(project, (t,), np.float32)

    def _cache_key(self, pool: Pool) -> tuple | None:
        """Identifies a pool whose scores can be reused (raw features of the same items and weights;
        this rank's shard of them, the ranks agreeing in `_select`)."""
        if self.source != "features":
            return None  # embeddings change as the model trains
        layout = pool.layout
        h = hashlib.blake2b(pool.local_ids.tobytes(), digest_size=16)
        if pool.weights is not None:
            h.update(np.asarray(pool.weights)[layout.lo : layout.hi].tobytes())
        return (len(pool), layout.world, layout.rank, layout.block_rows, h.hexdigest())

    # ------------------------------------------------------------------ selection
    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        n = len(pool)
        m = self.size(n)
        t0 = time.perf_counter()
        blocks = self._blocks(pool)
        comm, layout = blocks.comm, blocks.layout
        key = self._cache_key(pool)
        cached = getattr(self, "_cached", None)
        hit = key is not None and bool(comm.all_min(int(cached is not None and cached[0] == key)))
        if hit:
            scores, coords = cached[1], cached[2]
        else:
            scores, coords = self._scores(blocks, ctx), None
        score_s = time.perf_counter() - t0

        def pool_sum(v: np.ndarray) -> float:  # the same float at every world size
            return float(comm.block_sum(np.array([v[rows].sum() for _, rows in layout.local_blocks()]), layout))

        tau = np.clip(scores.values, 0.0, None)
        tau_sum = pool_sum(tau)
        meta: dict[str, Any] = {k: v for k, v in scores.meta.items() if k != "seconds"}
        if scores.rank == 0 or not tau_sum > 0:
            # constant-zero features carry no leverage information: sample uniformly
            q = np.ones(tau.shape[0])
            meta["fallback"] = "uniform (rank 0)"
        else:
            q = tau ** (self.p / 2.0) if self.score == "root" else tau
        q = q / (pool_sum(q) if q is not tau else tau_sum)
        if self.uniform_mix:
            q = (1.0 - self.uniform_mix) * q + self.uniform_mix / n
        positive = int(comm.all_sum(int((q > 0).sum())))
        if self.scheme != "replacement" and m > positive:
            raise self.param_error("budget", f"asks for {m} items but only {positive} have a positive score; lower it or set uniform_mix > 0")
        t1 = time.perf_counter()
        tree_s = 0.0
        positions = pool.local_positions
        if self.scheme == "replacement":
            mine = distributed.sample_with_replacement(comm, ctx.key(_DRAW), ShardedArray(q, layout), m)
            idx, weights = _gathered(comm, mine, 1.0 / (n * q[mine - layout.lo]))
        else:
            pi = distributed.inclusion_probabilities(comm, ShardedArray(q, layout), float(m))
            if self.scheme == "bernoulli":
                mine = distributed.bernoulli(ctx.key(_DRAW), pi, positions)
                redraws = 0
                while not comm.all_sum(int(mine.size)):  # an empty draw cannot be trained on: draw again (rare unless m is tiny)
                    redraws += 1
                    mine = distributed.bernoulli(ctx.key(_DRAW, redraws), pi, positions)
                if redraws:
                    meta["empty_redraws"] = redraws
                idx, weights = _gathered(comm, mine, m / (n * pi[mine - layout.lo]))
            else:
                tt = time.perf_counter()
                if coords is None:
                    coords = self._coords(blocks, scores)
                tree_s = time.perf_counter() - tt
                idx, chosen_pi = block_pivotal(comm, layout, pi, coords, lambda b: ctx.key(_TREE, b), ctx.key(_TREE))
                weights = m / (n * chosen_pi)
            meta["capped"] = int(comm.all_sum(int((pi >= 1 - sampling.TOL).sum())))
        sample_s = time.perf_counter() - t1
        if key is not None:
            self._cached = (key, scores, coords)
            meta["scores_cached"] = hit
        meta.update(
            {
                "size": int(idx.size),
                "expected_size": int(m),
                "score_sum": tau_sum,
                "weight_mean": float(weights.mean()) if idx.size else 0.0,
                "weight_max": float(weights.max()) if idx.size else 0.0,
                "score_s": round(score_s, 6),
                "sample_s": round(sample_s, 6),
                "coords_s": round(tree_s, 6),
            }
        )
        return Selection(idx.astype(np.int64), weights.astype(np.float32), meta=meta)


def _gathered(comm: Any, mine: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's chosen positions (ascending within each rank's shard) and their weights, in rank
    order: the whole selection, positions ascending, on every rank."""
    rec = np.empty(mine.size, dtype=[("pos", "i8"), ("w", "f8")])
    rec["pos"], rec["w"] = mine, weights
    both = np.concatenate(comm.all_gather(rec, "leverage: selection"))
    return both["pos"].copy(), both["w"].copy()
