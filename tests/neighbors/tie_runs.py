"""Every search path of the neighbour layer on data full of exact ties, saved for comparison.

``python tie_runs.py OUT.npz`` runs each path (self-join, plain exact search, the bfloat16 pass, IVF,
FAISS) on two data sets and saves every result's distances and indices under
``"<data>/<metric>/<path>/dist"`` and ``".../idx"``, with ``"fingerprints"``: digests of the
products this process's kernels give (torch float32 and bfloat16, numpy's BLAS, FAISS's), which tell
whether the kernel settings it ran under changed anything. `test_neighbors_ties.py` runs it under
several ``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA`` and ``OPENBLAS_CORETYPE``
settings and compares the files.

``ints``: integer coordinates in [-3, 3] with duplicated rows, so that float32 products are exact
under any kernel and tied distances abound; ``dups``: Gaussian rows, a quarter of them duplicated,
whose duplicates' float32 products may differ by an ulp from one tile or kernel to the next.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

K = 7
BLOCK = 32  # small query blocks: many tiles, several self-join blocks and query blocks in locality order


def ints() -> tuple[np.ndarray, np.ndarray]:
    """Integer rows (some twice or thrice) in shuffled order, and queries one step from base rows."""
    rng = np.random.default_rng(0)
    unique = rng.integers(-3, 4, (600, 40))
    base = np.concatenate([unique, unique[:150], unique[:75]])[rng.permutation(825)]
    queries = base[rng.choice(825, 150, replace=False)].copy()
    steps = rng.integers(-1, 2, queries.shape) * (rng.random(queries.shape) < 0.05)
    return base.astype(np.float32), np.clip(queries + steps, -3, 3).astype(np.float32)


def dups() -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows, the last quarter copies of the first; queries are the rows themselves."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((1200, 16)).astype(np.float32)
    base[900:] = base[:300]
    return base, base


def paths(metric: str) -> dict[str, dict]:
    """The configurations searched: name -> `NeighborConfig` keywords."""
    from selectkit.neighbors import lowp

    exact = {"metric": metric, "block_size": BLOCK, "precision": "fp32"}
    out = {
        "flat": exact,
        "ivf": {**exact, "backend": "ivf", "nlist": 8, "nprobe": 8, "exact_below": 0, "exact_self_below": 0},
    }
    if lowp.bf16_products_ok():
        out["bf16"] = {**exact, "precision": "bf16"}
    try:
        import faiss  # noqa: F401

        out["faiss"] = {"metric": metric, "engine": "faiss"}
    except ImportError:
        pass
    return out


def fingerprints() -> list[str]:
    """Digests of one float32 and one bfloat16 torch product, one numpy product and one FAISS search."""
    import torch

    rng = np.random.default_rng(1)
    a = rng.standard_normal((300, 37)).astype(np.float32)
    b = rng.standard_normal((211, 37)).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    products = [torch.mm(ta, tb.T).numpy(), torch.mm(ta.bfloat16(), tb.bfloat16().T).float().numpy(), a @ b.T]
    try:
        import faiss

        index = faiss.IndexFlatIP(37)
        index.add(b)
        products.append(index.search(a, 5)[0])
    except ImportError:
        pass
    return [hashlib.sha1(p.tobytes()).hexdigest()[:12] for p in products]


def run() -> dict[str, np.ndarray]:
    """Every path on every data set and metric: self-searches (``exclude_self``) and searches of queries."""
    from selectkit.neighbors import NeighborConfig, NeighborIndex

    results: dict[str, np.ndarray] = {"fingerprints": np.array(fingerprints())}
    for data, (base, queries) in {"ints": ints(), "dups": dups()}.items():
        for metric in ("l2", "ip", "cosine"):
            for name, settings in paths(metric).items():
                index = NeighborIndex(config=NeighborConfig(**settings)).fit(base)
                for what, (dist, idx) in {
                    "self": index.search(None, K, exclude_self=True),
                    "queries": index.search(queries, K),
                }.items():
                    results[f"{data}/{metric}/{name}/{what}/dist"] = dist
                    results[f"{data}/{metric}/{name}/{what}/idx"] = idx
                info = index.info()
                results[f"{data}/{metric}/{name}/precision"] = np.array(info["precision"])
                results[f"{data}/{metric}/{name}/rechecked"] = np.array(info["rechecked"])
    return results


if __name__ == "__main__":
    try:
        import faiss

        faiss.omp_set_num_threads(1)  # its OpenMP threads would only wait on one another for searches this small
    except ImportError:
        pass
    np.savez(sys.argv[1], **run())
