"""selectkit k-means (the layer's exact search) vs scikit-learn's Lloyd KMeans at equal work: same init, same iterations.

    python scripts/bench_kmeans.py [--n 100000] [--d 64] [--k 100] [--n-iter 20] [--rounds 3] [--out outputs/bench_kmeans]

Prints a markdown table and writes ``<out>/bench_kmeans.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchlib.neighbors import kmeans_comparison, kmeans_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--n-iter", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each times both once)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_kmeans"))
    args = parser.parse_args()
    result = kmeans_comparison(args.n, args.d, args.k, args.n_iter, args.seed, repeats=args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_kmeans.json").write_text(json.dumps(result, indent=2))
    print(kmeans_markdown(result))


if __name__ == "__main__":
    main()
