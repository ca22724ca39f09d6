"""Benchmark of selectkit's SMOTE against imbalanced-learn's, behind ``scripts/bench_smote.py``.

Every method runs in a fresh subprocess on the same data (regenerated there from the seed), so times and
peak memory are measured independently. Peak memory is the process's resident high-water mark, reset
just before the timed call (``/proc/self/clear_refs``), minus the resident size at that moment: the
memory the method itself needed on top of its input. The checks (exact segments, true neighbours,
recall) run after the measurement, outside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("imblearn", "exact", "approx")
KNOWN_METHODS = METHODS

#: exact search with the layer's default (cache-sized) blocks
EXACT = {"backend": "flat"}
# Rows of the untimed warm-up sample: enough minority points (2,000) for every code path of the timed
# call (several self-join blocks, the locality pass) to be loaded before timing starts.
WARMUP_ROWS = 20000


# ------------------------------------------------------------------------------------------ data


def make_data(n: int, d: int, seed: int = 0, imbalance: int = 9, blobs: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 points in ``d`` dimensions, one in ``imbalance + 1`` of class 1 (the minority).

    Each class is a mixture of ``blobs`` Gaussian blobs (unit spread, centres drawn with spread 4), so
    neighbourhoods have structure an approximate index can use. Rows are generated block by block
    straight into the result (no float64 temporary of the data's size).
    """
    rng = np.random.default_rng([seed, n, d])
    n_min = n // (imbalance + 1)
    y = np.zeros(n, dtype=np.int64)
    y[rng.choice(n, size=n_min, replace=False)] = 1
    centres = rng.normal(scale=4.0, size=(2, blobs, d)).astype(np.float32)
    blob = rng.integers(0, blobs, size=n)
    X = np.empty((n, d), dtype=np.float32)
    step = 1 << 16
    for start in range(0, n, step):
        stop = min(start + step, n)
        X[start:stop] = rng.standard_normal(size=(stop - start, d), dtype=np.float32)
        X[start:stop] += centres[y[start:stop], blob[start:stop]]
    return X, y


# ------------------------------------------------------------------------------------------ memory


def _status(field: str) -> int:
    """A ``/proc/self/status`` size field in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Reset the resident high-water mark to the current size (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ worker


def approx_config(n_minority: int, nprobe: int = 8) -> dict[str, Any]:
    """The approximate search the benchmark uses: IVF with ``sqrt(n)`` lists over the minority class."""
    return {"backend": "ivf", "nlist": int(max(16, np.sqrt(n_minority))), "nprobe": nprobe}


def method_config(method: str, n_minority: int, nprobe: int) -> dict[str, Any] | None:
    """The ``neighbors`` setting each selectkit method runs with."""
    return {"approx": approx_config(n_minority, nprobe), "exact": EXACT}.get(method)


def worker(method: str, n: int, d: int, k: int, seed: int, sample: int, nprobe: int = 8) -> dict[str, Any]:
    """Run one method once on freshly generated data; measure it; check what it produced."""
    X, y = make_data(n, d, seed)
    n_min = int((y == 1).sum())
    neighbors = method_config(method, n_min, nprobe)
    if method == "imblearn":
        from imblearn.over_sampling import SMOTE as Resampler

        est = Resampler(k_neighbors=k, random_state=seed)
    else:
        from selectkit_plugins.smote import SMOTE as Resampler

        est = Resampler(k_neighbors=k, random_state=seed, neighbors=neighbors)
    import gc

    # Warm-up on a small sample of the same data: module imports, compiled kernels, thread pools and
    # BLAS start-up are once-per-process costs for both libraries; reported apart, not in the timing.
    startup_base = _status("VmRSS")
    start = time.perf_counter()
    rows = np.random.default_rng([seed, 9]).choice(n, size=min(n, WARMUP_ROWS), replace=False)
    est.fit_resample(X[rows], y[rows])
    startup = time.perf_counter() - start
    startup_mb = (_status("VmRSS") - startup_base) / 2**20
    gc.collect()
    exact_peak = _reset_peak()
    base = _status("VmRSS")
    start = time.perf_counter()
    X_res, y_res = est.fit_resample(X, y)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    out: dict[str, Any] = {
        "method": method,
        "n": n,
        "d": d,
        "k": k,
        "seconds": seconds,
        "peak_extra_mb": (peak - base) / 2**20,
        "peak_reset": exact_peak,
        "startup_seconds": startup,
        "startup_mb": startup_mb,
        "input_mb": X.nbytes / 2**20,
        "output_mb": X_res.nbytes / 2**20,
        "counts": np.bincount(y_res, minlength=2).tolist(),
        "neighbors": neighbors,
    }
    if method != "imblearn":
        out.update(check_segments(X, y, X_res, est.synthetic_parents_, est.synthetic_lam_, k, sample, seed))
        if method == "approx":
            out["recall"] = approx_recall(X, y, k, neighbors, sample, seed)
    return out


def check_segments(X, y, X_res, parents, lam, k: int, sample: int, seed: int) -> dict[str, Any]:
    """Exactness of every synthetic row, and how many of a sample of seeds' partners are true neighbours.

    Every row: ``X_res[n + i] == X[p0] + lam * (X[p1] - X[p0])`` bit for bit, and both parents minority.
    Sampled seeds: ``p1`` is among ``p0``'s ``k`` nearest minority points by a float64 brute-force
    reference (distances within a relative 1e-5 of the k-th count as ties).
    """
    n = X.shape[0]
    exact = True
    step = 1 << 16
    for start in range(0, parents.shape[0], step):
        p = parents[start : start + step]
        want = X[p[:, 0]] + lam[start : start + step, None] * (X[p[:, 1]] - X[p[:, 0]])
        exact &= bool(np.array_equal(X_res[n + start : n + start + p.shape[0]], want))
    same_class = bool(np.all(y[parents] == 1))
    rng = np.random.default_rng([seed, 7])
    minority = np.flatnonzero(y == 1)
    seeds = rng.choice(np.unique(parents[:, 0]), size=min(sample, minority.size), replace=False)
    kth = _kth_distance(X, minority, seeds, k)
    rows = np.isin(parents[:, 0], seeds)
    pairs = parents[rows]
    dist = ((X[pairs[:, 0]].astype(np.float64) - X[pairs[:, 1]].astype(np.float64)) ** 2).sum(1)
    where = np.searchsorted(seeds, pairs[:, 0], sorter=np.argsort(seeds))
    bound = kth[np.argsort(seeds)][where]
    true_nn = dist <= bound * (1 + 1e-5)
    return {
        "synthetic": int(parents.shape[0]),
        "segments_exact": exact and same_class,
        "pairs_checked": int(pairs.shape[0]),
        "pairs_true_knn": float(true_nn.mean()) if pairs.size else 1.0,
    }


def _kth_distance(X: np.ndarray, candidates: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Float64 squared distance from each query to its k-th nearest candidate other than itself."""
    C = X[candidates].astype(np.float64)
    cn = (C**2).sum(1)
    out = np.empty(queries.size)
    for start in range(0, queries.size, 512):
        q = X[queries[start : start + 512]].astype(np.float64)
        d = (q**2).sum(1)[:, None] + cn[None, :] - 2.0 * q @ C.T
        d[candidates[None, :] == queries[start : start + 512, None]] = np.inf
        out[start : start + q.shape[0]] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def approx_recall(X, y, k: int, neighbors: dict[str, Any], sample: int, seed: int) -> float:
    """recall@k of the approximate search on the minority class, for a sample of queries."""
    from selectkit.neighbors import NeighborConfig, knn

    minority = np.flatnonzero(y == 1)
    Xm = np.ascontiguousarray(X[minority])
    rng = np.random.default_rng([seed, 8])
    rows = np.sort(rng.choice(minority.size, size=min(sample, minority.size), replace=False))
    _, approx = knn(Xm, Xm[rows], k=k + 1, config=NeighborConfig(**neighbors))
    kth = _kth_distance(Xm, np.arange(minority.size), rows, k)
    hits = 0
    for i, r in enumerate(rows):
        found = approx[i][(approx[i] != r) & (approx[i] >= 0)][:k]
        dist = ((Xm[found].astype(np.float64) - Xm[r].astype(np.float64)) ** 2).sum(1)
        hits += int((dist <= kth[i] * (1 + 1e-5)).sum())
    return hits / (k * rows.size)


# ------------------------------------------------------------------------------------------ driver


def run_one(method: str, n: int, d: int, k: int, seed: int, sample: int, timeout: float, nprobe: int = 8) -> dict[str, Any]:
    """``worker`` in a fresh Python process; its JSON result (or the error it died with)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, str(n), str(d), str(k), str(seed), str(sample), str(path), str(nprobe)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0 or not path.exists():
            return {"method": method, "n": n, "d": d, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
        return json.loads(path.read_text())


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"100000x32,1000000x128"`` -> ``[(100000, 32), (1000000, 128)]``."""
    out = []
    for item in text.split(","):
        n, d = item.lower().split("x")
        out.append((int(float(n)), int(d)))
    return out


def summarize(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the results, with speed-ups and memory ratios against imbalanced-learn."""
    lines = [
        "| N | d | method | time (s) | speed-up | peak extra (MiB) | vs imblearn | counts (maj, min) | segments exact | true-kNN pairs | recall@k | warm-up (s; MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = {(r["n"], r["d"]): r for r in rows if r["method"] == "imblearn" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['d']} | {r['method']} | failed: {' '.join(r['error'])} | | | | | | | | |")
            continue
        base = ref.get((r["n"], r["d"]))
        speed = f"{base['seconds'] / r['seconds']:.1f}x" if base else "-"
        mem = f"{r['peak_extra_mb'] / base['peak_extra_mb']:.2f}x" if base and base["peak_extra_mb"] > 0 else "-"
        counts = f"{r['counts'][0]}, {r['counts'][1]}"
        if base and r is not base:
            counts += " (same)" if base["counts"] == r["counts"] else " (DIFFERENT)"
        exact = {True: "yes", False: "NO"}.get(r.get("segments_exact"), "-")
        pairs = f"{r['pairs_true_knn']:.4f}" if "pairs_true_knn" in r else "-"
        recall = f"{r['recall']:.4f}" if "recall" in r else "-"
        lines.append(
            f"| {r['n']} | {r['d']} | {r['method']} | {r['seconds']:.2f} | {speed} | {r['peak_extra_mb']:.0f} | {mem} "
            f"| {counts} | {exact} | {pairs} | {recall} | {r['startup_seconds']:.2f}; {r['startup_mb']:.0f} |"
        )
    return "\n".join(lines)


def round_speedups(rows: list[dict[str, Any]]) -> str:
    """imbalanced-learn's time over each method's, round by round (both measured in the same round)."""
    ref = {(r["n"], r["d"]): r.get("round_seconds", []) for r in rows if r["method"] == "imblearn"}
    lines = ["Round by round (imbalanced-learn's time / method's time, same round):"]
    for r in rows:
        base = ref.get((r["n"], r["d"]))
        if r["method"] == "imblearn" or not base:
            continue
        ratios = [f"{b / s:.1f}x" if b and s else "failed" for b, s in zip(base, r.get("round_seconds", []))]
        lines.append(f"* {r['n']} x {r['d']} {r['method']}: {' / '.join(ratios)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``scripts/bench_smote.py``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000x32,300000x64,1000000x128", help="comma-separated NxD list")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ",".join(KNOWN_METHODS))
    parser.add_argument("--nprobe", type=int, default=8, help="IVF lists probed per query by the approx method")
    parser.add_argument("--k", type=int, default=5, help="k_neighbors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, default=2000, help="seeds (and queries) checked against brute force")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per method run")
    parser.add_argument("--repeats", type=int, default=1, help="rounds per size; each method keeps its fastest")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    for method in methods:
        if method not in KNOWN_METHODS:
            parser.error(f"unknown method {method!r}; choose from {', '.join(KNOWN_METHODS)}")
    rows = []
    for n, d in parse_sizes(args.sizes):
        # Rounds interleave the methods, so a slow spell of the machine hits all of them alike;
        # each method keeps its fastest round (memory and checks come from that round).
        best: dict[str, dict[str, Any]] = {}
        rounds: dict[str, list[float | None]] = {m: [] for m in methods}
        for _ in range(args.repeats):
            for method in methods:
                result = run_one(method, n, d, args.k, args.seed, args.sample, args.timeout, args.nprobe)
                print(json.dumps(result), file=sys.stderr, flush=True)
                rounds[method].append(result.get("seconds"))
                kept = best.get(method)
                if kept is None or "error" in kept or ("error" not in result and result["seconds"] < kept["seconds"]):
                    best[method] = result
        for m in methods:
            best[m]["round_seconds"] = rounds[m]
        rows.extend(best[m] for m in methods)
    print(summarize(rows))
    print()
    print(round_speedups(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        method, n, d, k, seed, sample, path, nprobe = sys.argv[2:10]
        result = worker(method, int(n), int(d), int(k), int(seed), int(sample), int(nprobe))
        Path(path).write_text(json.dumps(result))
    else:
        sys.exit(main())
