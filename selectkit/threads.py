"""Process-wide thread and allocator settings: how a run starts them, and how to tell they were kept.

Two things live here.

`prefer_passive_waits` is called by ``selectkit-train`` before anything imports torch. It sets
``OMP_WAIT_POLICY=PASSIVE`` unless the environment already names a policy. By default the GNU OpenMP
runtime behind torch's intra-op threads (and MKL's) spin-waits between parallel regions, several
hundred thousand spins per wait. On a machine whose cores are shared with other busy processes, a
spinning thread takes the core from the thread it waits for, and every parallel region then
costs a scheduler time slice: on a loaded 2-core machine an MLP training step took 0.09-0.21 s
(medians) on two spinning threads against 0.005-0.015 s on one and 0.006-0.013 s on two passive
threads (docs/benchmarks.md, "Threads under load"; ``scripts/bench_threads.py``). Passive threads sleep while they wait, which costs a few
microseconds per region on an idle machine. The runtime reads the policy once, when torch loads it,
so it cannot be changed later in the process. To keep the spinning policy, start the run with
``OMP_WAIT_POLICY=ACTIVE`` (or any value: a policy already set is kept).

`snapshot` and `changes` read the settings a selector must leave as it found them (torch's intra-op
and inter-op threads and its global modes, the thread counts of every loaded BLAS and OpenMP library
through threadpoolctl, numba's thread count once its pool runs, FAISS's OpenMP threads once FAISS is
loaded, and the environment variables that size thread pools or the allocator), and say what
differs; `selectkit.testing.check_selector` holds every selector to them.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

#: the policy `prefer_passive_waits` sets, and the variable it sets
WAIT_POLICY_VAR, WAIT_POLICY = "OMP_WAIT_POLICY", "PASSIVE"

#: environment variables that size thread pools or configure allocators (read when a library loads)
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OMP_DYNAMIC",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "GOMP_SPINCOUNT",
    "KMP_BLOCKTIME",
    "KMP_AFFINITY",
    "MKL_NUM_THREADS",
    "MKL_DYNAMIC",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "TOKENIZERS_PARALLELISM",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_NO_CUDA_MEMORY_CACHING",
)


def prefer_passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process and its children unless a policy is set.

    Returns whether the policy now in the environment is in force: False when torch was imported
    before this call (its OpenMP runtime has read the environment already), True otherwise.
    """
    os.environ.setdefault(WAIT_POLICY_VAR, WAIT_POLICY)
    return "torch" not in sys.modules


def _torch_settings(torch: Any) -> dict[str, Any]:
    out = {
        "torch intra-op threads (torch.set_num_threads)": torch.get_num_threads(),
        "torch inter-op threads (torch.set_num_interop_threads)": torch.get_num_interop_threads(),
        "torch grad mode (torch.set_grad_enabled)": torch.is_grad_enabled(),
        "torch inference mode": torch.is_inference_mode_enabled(),
        "torch default dtype (torch.set_default_dtype)": str(torch.get_default_dtype()),
        "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch float32 matmul precision": torch.get_float32_matmul_precision(),
    }
    cudnn = getattr(getattr(torch, "backends", None), "cudnn", None)
    if cudnn is not None:
        out["torch.backends.cudnn.benchmark"] = bool(cudnn.benchmark)
    return out


def _library_threads() -> dict[str, Any]:
    """Thread counts of the loaded BLAS and OpenMP libraries, by threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {f"{i['user_api']} threads of {os.path.basename(i['filepath'])} ({i['internal_api']})": i["num_threads"] for i in threadpool_info()}


def _numba_threads() -> dict[str, Any]:
    """numba's thread count, read only once its pool runs (reading it would start the pool)."""
    if "numba" not in sys.modules:
        return {}
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", False):
        return {}
    import numba

    return {"numba threads (numba.set_num_threads)": numba.get_num_threads()}


def _faiss_threads() -> dict[str, Any]:
    faiss = sys.modules.get("faiss")
    if faiss is None or not hasattr(faiss, "omp_get_max_threads"):
        return {}
    return {"faiss OpenMP threads (faiss.omp_set_num_threads)": faiss.omp_get_max_threads()}


def snapshot() -> dict[str, Any]:
    """The process-wide settings a selector must leave as it found them, by name.

    Only what is already loaded is read (torch, numba's pool, FAISS, the BLAS and OpenMP libraries):
    reading never starts a thread pool or loads a library.
    """
    out: dict[str, Any] = {f"environment variable {k}": os.environ.get(k) for k in ENV_VARS}
    torch = sys.modules.get("torch")
    if torch is not None:
        out.update(_torch_settings(torch))
    out.update(_library_threads())
    out.update(_numba_threads())
    out.update(_faiss_threads())
    return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``"name: before -> after"`` for every setting that differs. A setting read in only one of the
    two (a library or pool that started in between) is not a change, except environment variables,
    which are always read."""
    return [f"{name}: {before[name]!r} -> {after[name]!r}" for name in before if name in after and before[name] != after[name]]
