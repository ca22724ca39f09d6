"""FAISS access: lazy import, device choice, GPU resources and index construction."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from selectkit.errors import ConfigError, MissingDependencyError
from selectkit.neighbors.config import NeighborConfig

GPU_MAX_K = 2048
_GPU_RESOURCES: dict[int, Any] = {}


def import_faiss() -> Any:
    """The ``faiss`` module, or a `MissingDependencyError` that says how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise MissingDependencyError(
            "neighbors.backend=hnsw, neighbors.engine=faiss and GPU search need FAISS: "
            "pip install 'selectkit[faiss]' (CPU) or 'selectkit[gpu]' (CUDA)"
        ) from err
    return faiss


def faiss_gpus() -> int:
    """How many GPUs FAISS can use: 0 with faiss-cpu, or without FAISS installed."""
    try:
        faiss = import_faiss()
    except ImportError:
        return 0
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def use_gpu(config: NeighborConfig) -> bool:
    """Whether this config runs on a GPU; ``device='cuda'`` without one is an error."""
    if config.device == "cpu":
        return False
    gpus = faiss_gpus()
    if config.device == "cuda":
        if gpus == 0:
            raise ConfigError("neighbors.device='cuda' but FAISS sees no GPU; install faiss-gpu-cu12 or set neighbors.device=cpu")
        if config.backend == "hnsw":
            raise ConfigError("neighbors.backend='hnsw' has no FAISS GPU index; set neighbors.device=cpu or neighbors.backend=ivf")
        return True
    return gpus > 0 and config.backend != "hnsw"


def check_gpu_k(k: int) -> None:
    """FAISS GPU search returns at most 2048 neighbours per query."""
    if k > GPU_MAX_K:
        raise ConfigError(f"k={k} exceeds the {GPU_MAX_K} neighbours FAISS GPU search returns; lower k or set neighbors.device=cpu")


def gpu_device() -> int:
    """The CUDA device of this process: torch's current device (one per rank under DDP), else 0."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.current_device())
    except ImportError:
        pass
    return 0


def gpu_resources(device: int) -> Any:
    """One `StandardGpuResources` per device and process, created on first use."""
    if device not in _GPU_RESOURCES:
        _GPU_RESOURCES[device] = import_faiss().StandardGpuResources()
    return _GPU_RESOURCES[device]


def to_gpu(index: Any) -> Any:
    """A GPU copy of a CPU FAISS index on this process's device."""
    faiss = import_faiss()
    device = gpu_device()
    return faiss.index_cpu_to_gpu(gpu_resources(device), device, index)


def faiss_metric(metric: str) -> int:
    """FAISS metric constant: L2 for 'l2', inner product for 'ip' and 'cosine' (on normalised vectors)."""
    faiss = import_faiss()
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def auto_nlist(n_base: int, config: NeighborConfig) -> int:
    """IVF list count: the configured one, else ``4 * sqrt(n)``; never fewer than 39 training points per list."""
    train = min(n_base, config.train_size)
    wanted = config.nlist if config.nlist is not None else int(4 * math.sqrt(n_base))
    return max(1, min(wanted, train // 39 if train >= 39 else 1))


def build_faiss_index(base: np.ndarray, config: NeighborConfig, gpu: bool) -> Any:
    """A FAISS index over ``base`` (float32, C-contiguous, already normalised for cosine)."""
    faiss = import_faiss()
    n, d = base.shape
    metric = faiss_metric(config.metric)
    if config.backend == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, metric)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        index.add(base)
        return index
    if config.backend == "ivf":
        nlist = auto_nlist(n, config)
        quantizer = faiss.IndexFlat(d, metric)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        index.cp.seed = int(config.seed)
        rows = min(n, config.train_size)
        sample = base if rows == n else base[np.sort(np.random.default_rng(config.seed).choice(n, rows, replace=False))]
        index.train(sample)
        index.add(base)
        index.nprobe = min(config.nprobe, nlist)
        if gpu:
            index = to_gpu(index)
            index.nprobe = min(config.nprobe, nlist)
        return index
    index = faiss.IndexFlat(d, metric)
    index.add(base)
    return to_gpu(index) if gpu else index
