"""One rank of a distributed test: ``python dist_ranks.py SCENARIO WORLD RANK STORE OUT [JSON PARAMS]``.

Ranks meet through a ``file://`` store, on gloo, one thread each. A scenario returns a dict of arrays,
saved to ``OUT/rank<RANK>.npz``: keys starting with ``local:`` are this rank's share (the test
concatenates them in rank order), the others are global results every rank must agree on. An error
is written to ``OUT/rank<RANK>.err`` (its class and message) and the rank exits 1. At world size 1 no
process group is created.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

if __name__ == "__main__":
    # a rank runs one thread of everything; importing this module (the tests read its pools) must not
    # change the test process's own settings: numba, for one, refuses a thread count changed under it
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_var] = "1"

import numpy as np  # noqa: E402

# the pools every world size sees: the same data, generated on every rank
POOL_N, POOL_D, BLOCK_ROWS = 6100, 8, 500
QUERIES = 301
BLOBS_N, BLOBS_D, BLOBS_K = 8000, 6, 12


def pool() -> np.ndarray:
    """The battery's pool: standard normal rows."""
    return np.random.default_rng(7).standard_normal((POOL_N, POOL_D)).astype(np.float32)


def queries() -> np.ndarray:
    """The battery's queries (shared out over the ranks)."""
    return np.random.default_rng(8).standard_normal((QUERIES, POOL_D)).astype(np.float32)


def tied_scores(x: np.ndarray) -> np.ndarray:
    """Scores with many ties (a coarse rounding of the first column)."""
    return np.round(x[:, 0] * 2).astype(np.float64)


def weights(x: np.ndarray) -> np.ndarray:
    """Non-negative weights with zeros, one whole zero block and one zero tail block row."""
    w = np.abs(x[:, 1]).astype(np.float64)
    w[::7] = 0.0
    w[BLOCK_ROWS : 2 * BLOCK_ROWS] = 0.0
    return w


def wide_partials(n_blocks: int) -> np.ndarray:
    """Per-block partials of 5,000 values, block magnitudes from 1e-6 to 1e6 (so the order of the sum shows)."""
    scales = 10.0 ** ((np.arange(n_blocks) % 13) - 6)
    return np.random.default_rng(9).standard_normal((n_blocks, 50, 100)) * scales[:, None, None]


def rank_part(rank: int, shape: tuple) -> np.ndarray:
    """Rank ``rank``'s addend of the rank-ordered sums (magnitudes far apart, so the order shows)."""
    return np.random.default_rng(100 + rank).standard_normal(shape) * 10.0 ** (8 * (rank % 2))


def blobs() -> np.ndarray:
    """Clustered rows for k-means: 12 Gaussian blobs."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((BLOBS_K, BLOBS_D)) * 4
    return (centres[rng.integers(0, BLOBS_K, BLOBS_N)] + rng.standard_normal((BLOBS_N, BLOBS_D))).astype(np.float32)


def battery(comm, **_: object) -> dict:
    """Every collective once, over the same pool at any world size."""
    from selectkit.distributed import (
        ShardedArray, bernoulli, global_topk, gram, gumbel_topk, inclusion_probabilities, keyed_uniform,
        kmeans_parallel_init, sample_with_replacement, sharded_kmeans, sharded_knn,
    )
    from selectkit.neighbors import NeighborConfig, knn

    x = pool()
    layout = comm.layout(POOL_N, BLOCK_ROWS)
    sx = ShardedArray.from_global(x, layout)
    ids, lo, hi = sx.ids, layout.lo, layout.hi
    out: dict = {}
    out["block_sum"] = comm.block_sum(
        np.array([x[a:b].astype(np.float64).sum(axis=0) for a, b in map(layout.block_bounds, layout.blocks)]).reshape(-1, POOL_D),
        layout,
    )
    out["gram"] = gram(comm, sx, chunk_rows=128)
    # sums too wide to gather whole: cut into one slice per rank (all-to-all)
    out["wide_block_sum"] = comm.block_sum(wide_partials(layout.n_blocks)[layout.blocks.start : layout.blocks.stop], layout)
    for name, shape in (("small", (3,)), ("wide", (50, 100))):
        out[f"{name}_rank_sum"] = comm.all_sum(rank_part(comm.rank, shape))
    s = tied_scores(x)[lo:hi]
    top = global_topk(comm, s, ids, 40, payload={"row": sx.local})
    out["top_ids"], out["top_scores"], out["top_rows"] = top.ids, top.scores, top.payload["row"]
    low = global_topk(comm, s, ids, 25, largest=False)
    out["low_ids"] = low.ids
    out["local:uniform"] = keyed_uniform((1, 2), ids)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights(x)[lo:hi])
    out["gumbel_ids"] = gumbel_topk(comm, (3,), log_w, ids, 30).ids
    w = ShardedArray(weights(x)[lo:hi], layout)
    out["local:replacement"] = sample_with_replacement(comm, (4,), w, 3000)
    pi = inclusion_probabilities(comm, ShardedArray(np.abs(x[lo:hi, 2]).astype(np.float64) ** 3, layout), 400.0)
    out["local:pi"] = pi
    out["local:bernoulli"] = bernoulli((5,), pi, ids)

    share = np.array_split(np.arange(QUERIES), comm.world)[comm.rank]
    q = queries()
    for metric in ("l2", "cosine", "ip"):
        config = NeighborConfig(metric=metric)
        d, i = sharded_knn(comm, q[share], sx, 7, config=config, query_block=64)
        out[f"local:knn_{metric}_d"], out[f"local:knn_{metric}_i"] = d, i
        out[f"ref_knn_{metric}_d"], out[f"ref_knn_{metric}_i"] = knn(x, q, k=7, config=config)
    d, i = sharded_knn(comm, None, sx, 5, exclude_self=True, query_block=1000)
    out["local:self_d"], out["local:self_i"] = d, i
    out["ref_self_d"], out["ref_self_i"] = knn(x, k=5, exclude_self=True)

    xb = blobs()
    blayout = comm.layout(BLOBS_N, BLOCK_ROWS)
    sb = ShardedArray.from_global(xb, blayout)
    init = kmeans_parallel_init(comm, sb, BLOBS_K, seed=3)
    out["init_centroids"], out["init_rounds"], out["init_candidates"] = init.centroids, init.rounds, init.candidates
    for reduce in ("rank", "block"):
        r = sharded_kmeans(comm, sb, BLOBS_K, seed=3, n_iter=30, reduce=reduce)
        out[f"km_{reduce}_centroids"], out[f"km_{reduce}_inertia"], out[f"km_{reduce}_iter"] = r.centroids, r.inertia, r.n_iter
        out[f"local:km_{reduce}_assign"], out[f"local:km_{reduce}_dist"] = r.assignment, r.distances
    start = xb[:BLOBS_K].copy()
    start[1] = start[0]  # centre 1 starts empty (ties go to the lower centre)
    r = sharded_kmeans(comm, sb, BLOBS_K, init=start, n_iter=2, reduce="block")
    out["km_empty_centroids"], out["local:km_empty_assign"] = r.centroids, r.assignment
    out["local:bytes_sent"] = np.array([comm.bytes_sent])
    out.update(mismatch(comm))
    return out


def mismatch(comm, **_: object) -> dict:
    """Config and pool checks fed different values on rank 1 (each error recorded, then the next check;
    every check passes at world 1)."""
    from selectkit.distributed import check_same_config, check_same_pool, config_digest

    out = {}
    checks = {
        "config_error": lambda: check_same_config(comm, config_digest({"selector": "rs2" if comm.rank != 1 else "random"}), "selector"),
        "size_error": lambda: check_same_pool(comm, 1000 + (comm.rank == 1), "abc", what="data.path"),
        "digest_error": lambda: check_same_pool(comm, 1000, "abc" if comm.rank != 1 else "abd", what="data.path"),
    }
    for name, check in checks.items():
        try:
            check()
            out[f"local:{name}"] = np.array([""])
        except Exception as err:  # recorded for the test to read
            out[f"local:{name}"] = np.array([f"{type(err).__name__}: {err}"])
    check_same_config(comm, config_digest({"selector": "rs2"}), "selector")
    return out


def fault(comm, mode: str = "hang", fault_timeout_s: float = 3.0, **_: object) -> dict:
    """Rank 1 hangs (sleeps) or dies before a sum the others wait in, on a group timing out after
    ``fault_timeout_s`` (the default group keeps the generous start-up timeout)."""
    from selectkit.distributed import Comm

    comm = Comm(timeout_s=fault_timeout_s)
    if comm.rank == 1:
        if mode == "die":
            os._exit(3)
        time.sleep(120)
    comm.all_sum(np.ones(3))
    return {}


def selectors(comm, **params: object) -> dict:
    """Every built-in selector over one sharded pool (`selector_cases`)."""
    from selector_cases import selectors as run_cases

    return run_cases(comm, **params)


SCENARIOS = {"battery": battery, "fault": fault, "selectors": selectors}


def main() -> None:
    """Start the rank, run the scenario, save what it returns (or the error it raised)."""
    scenario, world, rank, store, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
    params = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    import torch

    torch.set_num_threads(1)
    from selectkit.distributed import Comm, init_process_group

    try:
        if world > 1:
            comm = init_process_group("gloo", timeout_s=params.get("timeout_s", 60), init_method=f"file://{store}", world_size=world, rank=rank)
        else:
            comm = Comm()
        result = SCENARIOS[scenario](comm, **params)
    except Exception as err:
        traceback.print_exc()
        (out / f"rank{rank}.err").write_text(f"{type(err).__name__}: {err}")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # no teardown: a peer may be gone or hung
    np.savez(out / f"rank{rank}.npz", **result)
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
