"""Exact kNN on this machine: selectkit's flat path, scikit-learn brute force, naive FAISS, against matmul peak.

    python scripts/bench_knn.py [--n-base 100000] [--n-query 10000] [--d 64] [--k 10] [--out outputs/bench_knn]

Prints a markdown table and writes ``<out>/bench_knn.json``. With ``--crossover`` it measures instead
where approximate search (IVF, HNSW) starts to beat exact search, the default of
``neighbors.exact_below``, and writes ``<out>/bench_crossover.json``:

    python scripts/bench_knn.py --crossover [--sizes 10000,20000,30000,50000,75000,100000] [--dims 32,128]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchlib.neighbors import crossover_comparison, crossover_markdown, knn_comparison, knn_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-base", type=int, default=100_000)
    parser.add_argument("--n-query", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_knn"))
    parser.add_argument("--crossover", action="store_true", help="measure exact vs IVF/HNSW at several base sizes")
    parser.add_argument("--sizes", default="10000,20000,30000,50000,75000,100000")
    parser.add_argument("--dims", default="32,128")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hnsw-up-to", type=int, default=20_000, help="largest base HNSW is measured on (its build is slow)")
    args = parser.parse_args()
    if args.crossover:
        sizes = tuple(int(v) for v in args.sizes.split(","))
        dims = tuple(int(v) for v in args.dims.split(","))
        result = crossover_comparison(sizes, dims, rounds=args.rounds, hnsw_up_to=args.hnsw_up_to, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_crossover.json").write_text(json.dumps(result, indent=2))
        print(crossover_markdown(result))
        return
    result = knn_comparison(args.n_base, args.n_query, args.d, args.k, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_knn.json").write_text(json.dumps(result, indent=2))
    print(knn_markdown(result))


if __name__ == "__main__":
    main()
