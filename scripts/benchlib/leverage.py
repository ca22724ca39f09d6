"""Benchmarks of the ``leverage`` selector, behind ``scripts/bench_leverage.py``.

Three parts, each side by side in one process:

* ``ls``: least squares on Fashion-MNIST. Features: the training images' left halves reduced by PCA
  (``--dims`` components, plus an intercept); target: the right halves' pixels (392 outputs). Each
  method picks ``m`` rows, the weighted least-squares fit on them is compared with the full fit by
  the relative excess residual ``(||X b - Y||^2 - ||X b* - Y||^2) / ||X b* - Y||^2`` over the whole
  training set, for several ``m`` and seeds. Methods: uniform (without replacement, unweighted) and
  the ``leverage`` selector with replacement, Bernoulli and pivotal. Plot: median error against ``m``.
* ``exact``: exact scores of an ``n x d`` float32 matrix (default 1M x 64) by the selector's blocked
  Cholesky-QR against numpy's reduced QR (``np.linalg.qr``) on the same float32 array and on a float64
  copy, interleaved by round; error against the float64 QR's scores. Also the same scores read from a
  memory-mapped ``.npy`` in blocks, with the peak of numpy allocations (``tracemalloc``).
* ``sketch``: sketched scores against exact ones for many columns (d >= 256).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from selectkit.selector import Pool, SelectContext
from selectkit_plugins.leverage import LeverageSampling
from selectkit_plugins.leverage.scores import Blocks, exact_scores, sketched_scores


# ---------------------------------------------------------------------------------- least squares
def fmnist_regression(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X, Y)``: PCA features of the left image halves (+ intercept) and the right halves' pixels."""
    from selectkit.data.fashion import load_fashion_mnist

    x, _ = load_fashion_mnist()["train"]
    img = x[:, 0].astype(np.float64)
    left = img[:, :, :14].reshape(len(img), -1)
    right = img[:, :, 14:].reshape(len(img), -1)
    centred = left - left.mean(0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(img) // 20000)], full_matrices=False)
    feats = centred @ vt[:dims].T
    X = np.concatenate([feats, np.ones((len(img), 1))], axis=1)
    return X.astype(np.float32), right


def _excess(X64: np.ndarray, G: np.ndarray, beta_star: np.ndarray, base: float, idx: np.ndarray, w: np.ndarray | None, Y: np.ndarray) -> float:
    sw = np.ones(idx.size) if w is None else np.sqrt(w.astype(np.float64))
    beta, *_ = np.linalg.lstsq(X64[idx] * sw[:, None], Y[idx] * sw[:, None], rcond=None)
    diff = beta - beta_star
    return float(np.einsum("ij,ij->", diff, G @ diff) / base)


def run_ls(dims: int, sizes: list[int], seeds: int, out: Path) -> dict[str, Any]:
    """The least-squares comparison; returns the table and writes the plot."""
    X, Y = fmnist_regression(dims)
    X64 = X.astype(np.float64)
    G = X64.T @ X64
    beta_star = np.linalg.solve(G, X64.T @ Y)
    base = float(((X64 @ beta_star - Y) ** 2).sum())
    pool = Pool(X.shape[0], features=X)
    n = X.shape[0]
    methods: dict[str, Any] = {
        "uniform": None,
        "leverage, with replacement": LeverageSampling(scheme="replacement", method="exact"),
        "leverage, Bernoulli": LeverageSampling(scheme="bernoulli", method="exact"),
        "leverage, pivotal": LeverageSampling(scheme="pivotal", method="exact"),
    }
    errors: dict[str, dict[int, list[float]]] = {k: {m: [] for m in sizes} for k in methods}
    seconds: dict[str, float] = {k: 0.0 for k in methods}
    for m in sizes:
        for seed in range(seeds):
            for name, sel in methods.items():
                t = time.perf_counter()
                if sel is None:
                    idx, w = np.random.default_rng([seed, m]).choice(n, size=m, replace=False), None
                else:
                    sel.budget = int(m)
                    res = sel.select(pool, SelectContext(seed=seed, epoch=m))
                    idx, w = res.indices, res.weights
                seconds[name] += time.perf_counter() - t
                errors[name][m].append(_excess(X64, G, beta_star, base, idx, w, Y))
    medians = {k: {m: statistics.median(v[m]) for m in sizes} for k, v in errors.items()}
    quart = {k: {m: [float(np.quantile(v[m], 0.25)), float(np.quantile(v[m], 0.75))] for m in sizes} for k, v in errors.items()}
    lev = exact_scores(Blocks.of(X))
    _plot_ls(sizes, medians, quart, out / "bench_leverage_ls.png", dims, seeds)
    return {"dims": dims, "n": n, "seeds": seeds, "sizes": sizes, "median": medians, "quartiles": quart, "select_s": seconds,
            "leverage_max_over_mean": float(lev.values.max() / lev.values.mean()), "plot": str(out / "bench_leverage_ls.png")}


def _plot_ls(sizes, medians, quart, path: Path, dims: int, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, med in medians.items():
        ys = [med[m] for m in sizes]
        lo = [quart[name][m][0] for m in sizes]
        hi = [quart[name][m][1] for m in sizes]
        ax.plot(sizes, ys, marker="o", label=name)
        ax.fill_between(sizes, lo, hi, alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows sampled (m)")
    ax.set_ylabel("relative excess residual (median, IQR band)")
    ax.set_title(f"Least squares on Fashion-MNIST (PCA {dims} + 1 columns, {seeds} seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------- exact speed
def test_matrix(n: int, d: int, kappa: float, seed: int = 0) -> np.ndarray:
    """``n x d`` float32 Gaussian rows, condition number about ``kappa`` in a random rotation, 1% of
    rows scaled by 10 (high leverage)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d), dtype=np.float32)
    if kappa > 1:
        rot = np.linalg.qr(rng.standard_normal((d, d)))[0]
        a = (a * np.logspace(0, math.log10(kappa), d, dtype=np.float32)) @ rot.astype(np.float32)
    a[: n // 100] *= 10
    return np.ascontiguousarray(a, dtype=np.float32)


def _qr_scores(a: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(a, mode="reduced")
    return np.einsum("ij,ij->i", q, q, dtype=np.float64)


def _errors(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {
        "rel_2norm": float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
        "rel_max": float(np.max(np.abs(got - ref) / np.maximum(ref, 1e-300))),
    }


def run_exact(n: int, d: int, kappas: list[float], rounds: int) -> list[dict[str, Any]]:
    """Selectkit's exact scores against numpy's QR, interleaved by round, per condition number."""
    rows = []
    for kappa in kappas:
        a = test_matrix(n, d, kappa)
        a64 = a.astype(np.float64)
        times: dict[str, list[float]] = {"selectkit": [], "np.linalg.qr (float32)": [], "np.linalg.qr (float64)": []}
        ref = ours = qr32 = None
        for _ in range(rounds):
            t = time.perf_counter()
            s = exact_scores(Blocks.of(a))
            times["selectkit"].append(time.perf_counter() - t)
            ours = s
            t = time.perf_counter()
            qr32 = _qr_scores(a)
            times["np.linalg.qr (float32)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = _qr_scores(a64)
            times["np.linalg.qr (float64)"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "n": n, "d": d, "kappa": kappa, "path": ours.method, "kappa_estimate": ours.meta["kappa"], "times": times, "median_s": med,
            "speedup_vs_qr32": med["np.linalg.qr (float32)"] / med["selectkit"],
            "speedup_vs_qr64": med["np.linalg.qr (float64)"] / med["selectkit"],
            "error_selectkit": _errors(ours.values, ref), "error_qr32": _errors(qr32, ref),
        }
        # the same scores from a memory-mapped file, in blocks; numpy's allocation peak alongside
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.npy"
            np.save(path, a)
            mapped = np.load(path, mmap_mode="r")
            tracemalloc.start()
            t = time.perf_counter()
            sm = exact_scores(Blocks.of(mapped))
            row["mmap_s"] = time.perf_counter() - t
            row["mmap_numpy_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            row["mmap_equal"] = bool(np.array_equal(sm.values, ours.values))
            del mapped
        row["matrix_mb"] = a.nbytes / 2**20
        rows.append(row)
        del a64
    return rows


def run_sketch(n: int, dims: list[int], rounds: int, projection: int) -> list[dict[str, Any]]:
    """Sketched against exact scores for many columns, interleaved by round."""
    rows = []
    for d in dims:
        a = test_matrix(n, d, 10.0, seed=d)
        k = 16 * d
        variants = {"exact": None, f"sketch k={k}": None, f"sketch k={k}, projection {projection}": projection}
        times: dict[str, list[float]] = {v: [] for v in variants}
        results: dict[str, Any] = {}
        for r in range(rounds):
            for name, proj in variants.items():
                t = time.perf_counter()
                if name == "exact":
                    res = exact_scores(Blocks.of(a))
                else:
                    res = sketched_scores(Blocks.of(a), sketch_size=k, projection=proj, rng=np.random.default_rng([r, d]))
                times[name].append(time.perf_counter() - t)
                results[name] = res
        ref = results["exact"].values
        row: dict[str, Any] = {"n": n, "d": d, "median_s": {k2: statistics.median(v) for k2, v in times.items()}, "times": times, "errors": {}}
        for name, res in results.items():
            if name == "exact":
                continue
            rel = np.abs(res.values / ref - 1.0)
            row["errors"][name] = {
                "median_rel": float(np.median(rel)), "p99_rel": float(np.quantile(rel, 0.99)),
                "rel_error_estimate": res.meta["rel_error_estimate"], "within_estimate": float(np.mean(rel <= res.meta["rel_error_estimate"])),
            }
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------- report
def _markdown(result: dict[str, Any]) -> str:
    lines = [f"Machine: {platform.machine()}, {result['cores']} cores, torch {result['torch']}, numpy {np.__version__}.", ""]
    if "ls" in result:
        ls = result["ls"]
        lines += [f"Least squares, Fashion-MNIST train ({ls['n']} rows, PCA {ls['dims']} + intercept, target 392 right-half pixels), "
                  f"{ls['seeds']} seeds; median relative excess residual (max leverage / mean: {ls['leverage_max_over_mean']:.1f}):", ""]
        names = list(ls["median"])
        lines += ["| m | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for m in ls["sizes"]:
            lines.append(f"| {m} | " + " | ".join(f"{ls['median'][k][m]:.4f}" for k in names) + " |")
        lines += ["", "Selection seconds over all runs: " + ", ".join(f"{k} {v:.1f} s" for k, v in ls["select_s"].items()), ""]
    for row in result.get("exact", []):
        med = row["median_s"]
        lines += [f"Exact scores, {row['n']} x {row['d']} float32 ({row['matrix_mb']:.0f} MB), kappa {row['kappa']:g} "
                  f"(estimated {row['kappa_estimate'] if isinstance(row['kappa_estimate'], str) else round(row['kappa_estimate'], 1)}, path {row['path']}):", "",
                  "| method | median s | rounds (s) | rel. error (2-norm) | max rel. error |", "| --- | --- | --- | --- | --- |",
                  f"| selectkit | {med['selectkit']:.3f} | {', '.join(f'{t:.2f}' for t in row['times']['selectkit'])} | {row['error_selectkit']['rel_2norm']:.1e} | {row['error_selectkit']['rel_max']:.1e} |",
                  f"| np.linalg.qr, float32 | {med['np.linalg.qr (float32)']:.3f} | {', '.join(f'{t:.2f}' for t in row['times']['np.linalg.qr (float32)'])} | {row['error_qr32']['rel_2norm']:.1e} | {row['error_qr32']['rel_max']:.1e} |",
                  f"| np.linalg.qr, float64 (reference) | {med['np.linalg.qr (float64)']:.3f} | {', '.join(f'{t:.2f}' for t in row['times']['np.linalg.qr (float64)'])} | 0 | 0 |",
                  "", f"Speed-up: {row['speedup_vs_qr32']:.1f}x against float32 QR, {row['speedup_vs_qr64']:.1f}x against float64 QR. "
                  f"Memory-mapped, in blocks: {row['mmap_s']:.2f} s, numpy allocation peak {row['mmap_numpy_peak_mb']:.0f} MB, scores identical: {row['mmap_equal']}.", ""]
    for row in result.get("sketch", []):
        lines += [f"Sketched scores, {row['n']} x {row['d']} float32:", "", "| method | median s | median rel. error | p99 rel. error | stated estimate | rows within it |", "| --- | --- | --- | --- | --- | --- |"]
        for name, t in row["median_s"].items():
            e = row["errors"].get(name)
            lines.append(f"| {name} | {t:.2f} | " + (" | ".join([f"{e['median_rel']:.3f}", f"{e['p99_rel']:.3f}", f"{e['rel_error_estimate']:.3f}", f"{e['within_estimate']:.3f}"]) if e else "0 | 0 | - | -") + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of ``scripts/bench_leverage.py``."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["ls", "exact", "sketch"], choices=["ls", "exact", "sketch"])
    p.add_argument("--dims", type=int, default=32, help="PCA components of the least-squares features")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 70, 100, 150, 250, 400, 700])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--n", type=int, default=1_000_000, help="rows of the exact-score matrix")
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--kappas", type=float, nargs="+", default=[1.0, 100.0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sketch-n", type=int, default=400_000)
    p.add_argument("--sketch-dims", type=int, nargs="+", default=[256, 512])
    p.add_argument("--projection", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_leverage"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cores": torch.get_num_threads(), "torch": torch.__version__}
    if "ls" in args.parts:
        result["ls"] = run_ls(args.dims, args.sizes, args.seeds, args.out)
        print(json.dumps({"ls_median": result["ls"]["median"]}, indent=1), flush=True)
    if "exact" in args.parts:
        result["exact"] = run_exact(args.n, args.d, args.kappas, args.rounds)
        print(json.dumps(result["exact"], indent=1, default=str), flush=True)
    if "sketch" in args.parts:
        result["sketch"] = run_sketch(args.sketch_n, args.sketch_dims, max(1, args.rounds - 1), args.projection)
        print(json.dumps(result["sketch"], indent=1, default=str), flush=True)
    (args.out / "bench_leverage.json").write_text(json.dumps(result, indent=1, default=str))
    md = _markdown(result)
    (args.out / "bench_leverage.md").write_text(md)
    print(md)
    return 0
