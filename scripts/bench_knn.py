"""Exact kNN on this machine: selectkit's flat path, scikit-learn brute force, naive FAISS, against matmul peak.

    python scripts/bench_knn.py [--n-base 100000] [--n-query 10000] [--d 64] [--k 10] [--out outputs/bench_knn]

Prints a markdown table and writes ``<out>/bench_knn.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selectkit.neighbors.bench import knn_comparison, knn_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-base", type=int, default=100_000)
    parser.add_argument("--n-query", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_knn"))
    args = parser.parse_args()
    result = knn_comparison(args.n_base, args.n_query, args.d, args.k, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_knn.json").write_text(json.dumps(result, indent=2))
    print(knn_markdown(result))


if __name__ == "__main__":
    main()
