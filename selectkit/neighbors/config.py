"""`NeighborConfig`: every setting of the neighbour layer, checked when it is created."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from selectkit.errors import ConfigError

log = logging.getLogger("selectkit.neighbors")

BACKENDS = ("flat", "ivf", "hnsw")
METRICS = ("l2", "cosine", "ip")
DEVICES = ("cpu", "cuda", "auto")
ENGINES = ("auto", "faiss")
PRECISIONS = ("auto", "fp32", "bf16")
# Base size below which exact search beats IVF (build + self-search, k=5) on CPU, at d = EXACT_BELOW_DIM;
# the crossover moves with 1 / sqrt(d): about 74k points at d=32 and 37k at d=128 (scripts/bench_knn.py
# --crossover, docs/benchmarks.md). HNSW's build is slower still, so the same bound is safe for it.
EXACT_BELOW = 52_000
# The same for a search of the base against itself (SMOTE's per-class search), whose exact self-join skips
# the chunk pairs that lie too far apart: on clustered data it beat IVF at every size measured, up to
# 400k points at d=64; where IVF was faster (unclustered noise) it found a quarter of the neighbours.
EXACT_SELF_BELOW = 400_000
EXACT_BELOW_DIM = 64


@dataclass
class NeighborConfig:
    """How neighbours are searched; the Hydra group ``neighbors`` instantiates it.

    Errors name the field as ``neighbors.<field>`` (its path in the Hydra config).
    """

    backend: str = "flat"  # 'flat' exact search | 'ivf' inverted lists (approximate) | 'hnsw' graph (approximate)
    metric: str = "l2"  # 'l2' squared Euclidean | 'cosine' similarity of L2-normalised copies | 'ip' inner product
    device: str = "cpu"  # 'cpu' | 'cuda' (FAISS GPU index) | 'auto' (cuda when FAISS sees a GPU)
    engine: str = "auto"  # 'auto': flat and IVF on CPU run on the layer's GEMM tiles, the rest on FAISS | 'faiss': FAISS indexes only
    block_size: int | None = None  # queries per block; None picks one that keeps the distance tile within the cap
    memory_cap_gb: float = 8.0  # peak memory a job may need (GB, 1e9 bytes); checked before any work starts
    nlist: int | None = None  # IVF: number of inverted lists; None = 4 * sqrt(n_base), at least 39 points per list
    nprobe: int = 16  # IVF: lists visited per query (FAISS's own default of 1 loses much recall)
    hnsw_m: int = 32  # HNSW: graph links per node
    ef_search: int = 128  # HNSW: candidate list size while searching (raised to k when smaller)
    ef_construction: int = 200  # HNSW: candidate list size while building
    train_size: int = 100_000  # IVF: at most this many base points (a seeded sample) train the coarse quantizer
    seed: int = 0  # seed of IVF training samples and of k-means
    precision: str = "auto"  # exact search's products on CPU: 'bf16' certified bfloat16 pass + float32 rescoring (same results) | 'fp32' | 'auto' (bf16 where the CPU has bfloat16 instructions, d >= 32 and the base has >= 16384 points)
    exact_below: int | None = EXACT_BELOW  # IVF/HNSW: bases of fewer points (at d=64, times sqrt(64/d)) are searched exactly, faster there; None or 0: never
    exact_self_below: int | None = EXACT_SELF_BELOW  # the same for an index searched against its own base (a self-join); None or 0: never

    def __post_init__(self) -> None:
        """Reject unknown choices and out-of-range numbers with a message naming the field."""
        for name, allowed in (("backend", BACKENDS), ("metric", METRICS), ("device", DEVICES), ("engine", ENGINES), ("precision", PRECISIONS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"neighbors.{name}={value!r} is not one of {', '.join(map(repr, allowed))}")
        for name in ("block_size", "nlist"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise ConfigError(f"neighbors.{name}={value!r} must be a positive integer or null")
        for name in ("nprobe", "hnsw_m", "ef_search", "ef_construction", "train_size"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise ConfigError(f"neighbors.{name}={value!r} must be a positive integer")
        for name in ("exact_below", "exact_self_below"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 0):
                raise ConfigError(f"neighbors.{name}={value!r} must be a non-negative integer or null")
        if not _is_int(self.seed):
            raise ConfigError(f"neighbors.seed={self.seed!r} must be an integer")
        if isinstance(self.memory_cap_gb, bool) or not isinstance(self.memory_cap_gb, (int, float)) or not self.memory_cap_gb > 0:
            raise ConfigError(f"neighbors.memory_cap_gb={self.memory_cap_gb!r} must be a positive number of GB")
        self.memory_cap_gb = float(self.memory_cap_gb)


def _is_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def resolve(config: NeighborConfig | None) -> NeighborConfig:
    """The given config, or the defaults when it is None."""
    if config is None:
        return NeighborConfig()
    if not isinstance(config, NeighborConfig):
        raise ConfigError(f"neighbors must be a NeighborConfig or None, got {type(config).__name__}")
    return config


def exact_threshold(config: NeighborConfig, d: int, self_join: bool = False) -> int:
    """Base size below which ``config`` searches exactly at dimension ``d``: ``exact_below`` (or, for
    an index searched against its own base, ``exact_self_below``) at d=64, scaled by
    ``sqrt(64 / d)`` (0 when the fallback is off)."""
    bound = config.exact_self_below if self_join else config.exact_below
    if not bound:
        return 0
    return int(round(bound * math.sqrt(EXACT_BELOW_DIM / max(1, d))))


def effective(config: NeighborConfig, n_base: int, d: int, self_join: bool = False) -> tuple[NeighborConfig, bool]:
    """The config a search over ``n_base`` points of dimension ``d`` runs with, and whether it falls
    back to exact search.

    An approximate backend (``ivf``, ``hnsw``) over fewer than `exact_threshold` points becomes
    ``flat``: below that measured crossover building and searching the approximate index takes
    longer than the exact search. ``self_join``: the index will be searched against its own base,
    whose crossover lies higher. The same settings otherwise.
    """
    if config.backend != "flat" and n_base < exact_threshold(config, d, self_join):
        return replace(config, backend="flat"), True
    return config, False


def log_fallback(config: NeighborConfig, n_base: int, d: int, self_join: bool = False) -> None:
    """One log line saying that a search over ``n_base`` points runs exactly instead of ``config.backend``."""
    name = "exact_self_below" if self_join else "exact_below"
    log.info(
        "n=%d below crossover %d (neighbors.%s=%d at d=%d, here d=%d): exact search instead of %s",
        n_base, exact_threshold(config, d, self_join), name, getattr(config, name), EXACT_BELOW_DIM, d, config.backend,
    )


def flat_precision(config: NeighborConfig, d: int, n_base: int | None = None) -> str:
    """The products the layer's exact CPU engine runs at dimension ``d`` over ``n_base`` points (None:
    a large base): ``'bf16'`` or ``'fp32'``.

    ``'auto'`` takes the certified bfloat16 pass where it pays: a base of at least 16,384 points (below
    that, e.g. k-means' final assignment to its centroids, rescoring the candidates costs more than
    the faster products save), a CPU with bfloat16 matrix instructions,
    ``d >= 32`` (narrower, the scan and failed certificates eat the gain: measured from d=8 to 64), and torch's bfloat16
    products within the error model the certificate assumes (`selectkit.neighbors.lowp.bf16_products_ok`).
    ``'bf16'`` asked for explicitly is refused only when that model does not hold.
    """
    from selectkit.neighbors import lowp

    if config.precision == "fp32":
        return "fp32"
    if config.precision == "bf16":
        if not lowp.bf16_products_ok():
            raise ConfigError(
                "neighbors.precision=bf16: torch's bfloat16 products on this machine do not meet the error bound "
                "the certified search needs; set neighbors.precision=auto or fp32"
            )
        return "bf16"
    large = n_base is None or n_base >= lowp.MIN_BASE
    return "bf16" if large and d >= lowp.MIN_DIM and lowp.fast_bf16_cpu() and lowp.bf16_products_ok() else "fp32"
