"""Acquisition speed over the Fashion-MNIST training pool (60k), side by side in one run.

    python scripts/bench_acquisition.py [--budget 1000] [--labelled 1000] [--repeats 2] [--out outputs/bench_acquisition]

A model (selectkit's MLP 784-256-64-10 with dropout 0.2) is trained for a few epochs on ``--labelled``
random items; the other items are the unlabelled pool. The core's providers (`selectkit.providers`)
score the pool once (``probs``, ``mc_probs`` with 20 passes, ``embeddings``, ``grad_embeddings``: 64-d
penultimate layer, so 640-d gradient embeddings), timed each. Then every acquisition selects
``--budget`` items from the same provider arrays, timed (best of ``--repeats``) with its peak traced
allocation (tracemalloc: numpy arrays the selection allocates beyond its inputs):
entropy top-k, power-entropy, power-margin, power-least-confidence, power-BALD, k-center greedy, BADGE, TypiClust (embeddings), random.
Reports BADGE's time over each power acquisition's (entropy, margin, least confidence), for selection alone and with each one's provider pass.

Writes ``<out>/bench_acquisition.md`` (a section ready for docs/benchmarks.md) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from selectkit.selector import Pool, SelectContext

ACQUISITIONS = {
    "random": ("random", {}),
    "entropy (top-k)": ("entropy", {}),
    "power-entropy": ("entropy", {"stochastic": "power", "temperature": 1.0}),
    "power-margin": ("margin", {"stochastic": "power", "temperature": 1.0}),
    "power-least-confidence": ("least_confidence", {"stochastic": "power", "temperature": 1.0}),
    "power-BALD": ("bald", {"stochastic": "power", "temperature": 1.0, "passes": 20}),
    "k-center greedy": ("kcenter", {"space": "embeddings"}),
    "BADGE": ("badge", {}),
    "TypiClust (embeddings)": ("typiclust", {"space": "embeddings"}),
}


def _train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    """A few epochs of Adam on the labelled items (only to make the pool's scores those of a trained model)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=g).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def _timed(fn, repeats: int):
    """(result, best seconds, peak traced MB of one call)."""
    best, out = float("inf"), None
    for i in range(repeats):
        if i == 0:
            tracemalloc.start()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        if i == 0:
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    return out, best, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--labelled", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_acquisition"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from selectkit import registry
    from selectkit.data import build_datasets
    from selectkit.models import MLP, ModelAdapter
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.tasks import Classification

    train, _, meta = build_datasets(name="fashion_mnist", val_fraction=0.0, seed=args.seed, normalize=True)
    n = len(train)
    rng = np.random.default_rng(args.seed)
    labelled = np.sort(rng.choice(n, size=args.labelled, replace=False)).astype(np.int64)
    unlabelled = np.setdiff1d(np.arange(n, dtype=np.int64), labelled)
    torch.manual_seed(args.seed)
    model = MLP(in_features=784, hidden=[256, 64], num_classes=10, dropout=0.2)
    _train(model, train.x[labelled], train.y[labelled], args.epochs, args.seed)
    task = Classification()
    task.setup({"num_classes": 10, "input_shape": (1, 28, 28)})
    scorer = PoolScorer(ModelAdapter(model, num_classes=10), train, batch_size=1024, seed=args.seed, memory_cap_gb=8.0)
    providers = model_providers(scorer, task)

    provider_s: dict[str, float] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {"pool": {}, "labelled": {}}
    for name, params in (("probs", {}), ("mc_probs", {"passes": 20}), ("embeddings", {}), ("grad_embeddings", {})):
        t = time.perf_counter()
        arrays["pool"][name] = providers[name](unlabelled, **params)
        provider_s[name] = time.perf_counter() - t
    arrays["labelled"]["embeddings"] = providers["embeddings"](labelled)
    sizes_mb = {k: round(v.nbytes / 2**20, 1) for k, v in arrays["pool"].items()}

    def pool() -> Pool:
        ref = Pool(labelled, embeddings=arrays["labelled"]["embeddings"])
        mc = arrays["pool"]["mc_probs"]
        return Pool(unlabelled, providers={"mc_probs": lambda ids, passes: mc}, labelled=ref, **{k: v for k, v in arrays["pool"].items() if k != "mc_probs"})

    results: dict[str, dict] = {}
    for label, (name, params) in ACQUISITIONS.items():
        selector = registry.create(name, budget=args.budget, **params)
        p = pool()
        # warm-up: compiled neighbour kernels, caches
        registry.create(name, budget=min(args.budget, 20), **params).select(p, SelectContext(seed=args.seed, round=1))
        out, seconds, peak = _timed(lambda: selector.select(p, SelectContext(seed=args.seed, round=1)), args.repeats)
        assert len(out) == args.budget and np.unique(out.indices).size == args.budget
        results[label] = {"selector": name, **params, "select_s": round(seconds, 4), "peak_traced_mb": round(peak, 1)}
        print(f"{label:24s} {seconds:9.4f} s  peak {peak:8.1f} MB", flush=True)

    badge = results["BADGE"]
    # BADGE's time over each stochastic acquisition's: selection alone, and with each one's provider pass
    ratios = {
        label: {
            "selection": round(badge["select_s"] / max(results[label]["select_s"], 1e-9), 1),
            "with_providers": round((badge["select_s"] + provider_s["grad_embeddings"]) / (results[label]["select_s"] + provider_s["probs"]), 1),
        }
        for label in ("power-entropy", "power-margin", "power-least-confidence")
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "pool": int(unlabelled.size),
        "labelled": int(labelled.size),
        "budget": args.budget,
        "provider_s": {k: round(v, 3) for k, v in provider_s.items()},
        "provider_mb": sizes_mb,
        "acquisitions": results,
        "badge_over": ratios,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    (args.out / "bench_acquisition.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"Pool: {report['pool']} unlabelled Fashion-MNIST training items, {report['labelled']} labelled, budget {args.budget}; {report['machine']}.",
        "",
        "| provider | seconds | array MB |",
        "| --- | ---: | ---: |",
        *[f"| `{k}` | {provider_s[k]:.2f} | {sizes_mb[k]} |" for k in provider_s],
        "",
        "| acquisition | selection s (best of %d) | peak traced MB |" % args.repeats,
        "| --- | ---: | ---: |",
        *[f"| {k} | {v['select_s']:.4f} | {v['peak_traced_mb']} |" for k, v in results.items()],
        "",
        *[
            f"BADGE / {label}: {r['selection']:.0f}x on selection alone, {r['with_providers']:.0f}x with each one's provider pass "
            "(`grad_embeddings` vs `probs`)."
            for label, r in ratios.items()
        ],
        f"Peak RSS of the whole process: {report['max_rss_mb']} MB.",
    ]
    (args.out / "bench_acquisition.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
