"""Peak-memory estimates, the cap check every entry point runs first, and automatic block sizes."""

from __future__ import annotations

from dataclasses import dataclass

from selectkit.errors import ConfigError
from selectkit.neighbors.config import NeighborConfig

F32 = 4
BF16 = 2
I64 = 8
GB = 1e9
TILE_FRACTION = 0.25
BASE_BLOCK = 2048
TILE_BYTES = 4 * 2**20
MIN_QUERY_BLOCK = 16
MAX_QUERY_BLOCK = 4096
FAISS_QUERY_BLOCK = 4096
FAISS_TILE_BYTES = 64 * 2**20


class MemoryCapExceeded(ConfigError):
    """A job would need more memory than ``neighbors.memory_cap_gb`` allows (raised before any work)."""


@dataclass(frozen=True)
class Blocks:
    """How a search is cut: queries per block, base points per tile, and worker threads (0 = torch's count)."""

    query: int
    base: int
    workers: int = 0


def search_workers() -> int:
    """Threads the flat path runs: torch's intra-op thread count (``torch.set_num_threads``)."""
    import torch

    return max(1, torch.get_num_threads())


def plan_blocks(n_base: int, k: int, d: int, config: NeighborConfig) -> Blocks:
    """Block sizes that keep each worker's distance tile cache-sized and within the memory cap.

    Flat search: tiles of up to 2,048 base points, and as many queries as fill about 4 MiB
    (between 16 and 4,096), so the product and the scan of one tile share the core's cache.
    ``config.block_size`` fixes the query block instead. Tiles shrink further (queries first, then
    base points) when all workers' tiles together would pass ``TILE_FRACTION * memory_cap_gb``.
    """
    budget = TILE_FRACTION * config.memory_cap_gb * GB
    if config.backend != "flat":
        per_query = max(1, _faiss_tile_per_query(n_base, k, d))
        query = config.block_size or max(1, min(FAISS_QUERY_BLOCK, int(min(budget, FAISS_TILE_BYTES) // per_query)))
        return Blocks(query, n_base, 1)
    workers = search_workers()
    base = max(1, min(n_base, BASE_BLOCK))
    query = config.block_size or max(MIN_QUERY_BLOCK, min(MAX_QUERY_BLOCK, TILE_BYTES // (base * F32)))
    if config.block_size is None:
        while query > 1 and workers * _tile_bytes(query, base, k, d) > budget:
            query //= 2
        while base > 1024 and workers * _tile_bytes(query, base, k, d) > budget:
            base //= 2
    return Blocks(query, base, workers)


def _tile_bytes(query: int, base: int, k: int, d: int) -> int:
    """One flat worker's working set: its score tile and its share of the exact-distance gather."""
    return query * (base * F32 + k * d * F32 * 2)


def _faiss_tile_per_query(n_base: int, k: int, d: int) -> int:
    """Per-query working set of a FAISS search: its distance row slice, heap, and exact-distance gather."""
    return min(n_base, 1024) * F32 + k * (F32 + I64) * 2 + k * d * F32 * 2 + d * F32


TWIN_BYTES = 5 * I64  # per base point, finding its identical rows at fit (`selectkit.neighbors.rescore.twin_groups`)


def index_bytes(n_base: int, d: int, config: NeighborConfig) -> int:
    """Memory held by a built index over ``n_base`` points, including the float32 copy of the base and
    the search for its identical rows."""
    base = n_base * d * F32 + n_base * TWIN_BYTES
    if config.backend == "flat":
        return base + n_base * F32 + (n_base * d * BF16 if _bf16(config, d, n_base) else 0)
    if config.backend == "ivf":
        from selectkit.neighbors.backend import auto_nlist

        nlist = auto_nlist(n_base, config)
        train = min(n_base, config.train_size) * d * F32
        return base + n_base * (d * F32 + I64) + nlist * d * F32 + train
    return base + n_base * (d * F32 + int(2.5 * config.hnsw_m) * 4 + 24)


def estimate_memory_bytes(n_base: int, n_query: int, d: int, k: int, config: NeighborConfig | None = None) -> int:
    """Estimated peak bytes of a job: the index, one query block with its distance tile, and the results.

    An approximate backend below its exact-search threshold (`config.exact_threshold`) is estimated
    as the exact search it falls back to.

    ``n_query=0`` estimates building the index alone. Queries that are not the base add their own
    float32 copy (count them in ``n_query``; self-searches pass the base size).
    """
    from selectkit.neighbors.config import effective, resolve

    config, _ = effective(resolve(config), n_base, d)
    total = index_bytes(n_base, d, config)
    if n_query > 0:
        blocks = plan_blocks(n_base, k, d, config)
        query = min(blocks.query, n_query)
        if config.backend == "flat":
            tile = blocks.workers * _tile_bytes(query, blocks.base, k, d)
            if n_query > blocks.query:  # the queries' copy in locality order
                tile += n_query * d * F32
            if _bf16(config, d, n_base):  # each worker's bfloat16 tile and its wider candidate heap
                from selectkit.neighbors.lowp import heap_width

                tile += blocks.workers * query * (blocks.base * BF16 + heap_width(k) * (F32 + I64 + 8))
        else:
            tile = query * _faiss_tile_per_query(n_base, k, d)
        results = n_query * (k + 1) * (F32 + I64) * 2
        if config.backend == "ivf":
            results += n_query * config.nprobe * (k + 1) * (F32 + I64) * 2  # per-probe candidates and list order
        total += n_query * d * F32 + query * d * F32 + tile + results
    return int(total)


def check_cap(n_base: int, n_query: int, d: int, k: int, config: NeighborConfig, what: str = "search") -> int:
    """Raise `MemoryCapExceeded` when the job's estimate is above ``config.memory_cap_gb``."""
    need = estimate_memory_bytes(n_base, n_query, d, k, config)
    if need > config.memory_cap_gb * GB:
        hint = " or lower neighbors.block_size" if config.block_size is not None and n_query > 0 else ""
        raise MemoryCapExceeded(
            f"neighbors.memory_cap_gb={config.memory_cap_gb:g} is below the {need / GB:.2f} GB this {what} needs; "
            f"raise neighbors.memory_cap_gb{hint}"
        )
    return need


def _bf16(config: NeighborConfig, d: int, n_base: int) -> bool:
    """Whether a flat search of ``config`` over ``n_base`` points on the layer's CPU engine runs the bfloat16 pass."""
    from selectkit.neighbors.config import flat_precision

    return config.engine == "auto" and config.device != "cuda" and flat_precision(config, d, n_base) == "bf16"
