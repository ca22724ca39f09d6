"""Hard-negative mining at corpus scale: selectkit's hard_negatives against sentence-transformers' mine_hard_negatives.

    python scripts/bench_hard_negatives.py [--corpus 1000000] [--queries 10000] [--dim 384] [--negatives 5]
        [--range-min 0] [--range-max 30] [--relative-margin 0.05] [--max-score 0.95]
        [--peers st_faiss,st_exact] [--exact-batch 1024] [--rounds 1] [--out outputs/bench_hard_negatives]

Exact cosine search on both sides with the same filters (rank window, relative/absolute margin,
maximum score) and ``top`` sampling; every method runs in its own subprocess (peak memory is its own),
rounds interleaved. ``st_faiss`` is sentence-transformers' FAISS path (``use_faiss=True``: an exact
``IndexFlatIP``), ``st_exact`` its torch path (``use_faiss=False``) with ``--exact-batch`` queries per
similarity block (its default of 16384 needs 16384 x corpus floats: 65 GB at 1M). Prints a markdown
table and writes ``<out>/bench_hard_negatives.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchlib.hard_negatives import compare, make_data, markdown, run_method


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--range-min", type=int, default=0)
    parser.add_argument("--range-max", type=int, default=30)
    parser.add_argument("--relative-margin", type=float, default=0.05)
    parser.add_argument("--absolute-margin", type=float, default=None)
    parser.add_argument("--max-score", type=float, default=0.95)
    parser.add_argument("--peers", default="st_faiss,st_exact")
    parser.add_argument("--exact-batch", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_hard_negatives"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_method(args.worker, args.data, json.loads(args.settings), args.result)
        return
    settings = {
        "negatives": args.negatives, "range_min": args.range_min, "range_max": args.range_max, "relative_margin": args.relative_margin,
        "absolute_margin": args.absolute_margin, "max_score": args.max_score, "exact_batch": args.exact_batch,
    }
    data = make_data(args.out / f"data_{args.corpus}_{args.queries}_{args.dim}_{args.seed}", args.corpus, args.queries, args.dim, args.seed)
    methods = ["selectkit"] + [m for m in args.peers.split(",") if m]
    result = compare(data, settings, methods, args.rounds, args.out)
    result.update({"corpus": args.corpus, "queries": args.queries, "dim": args.dim})
    (args.out / "bench_hard_negatives.json").write_text(json.dumps(result, indent=2))
    print(f"corpus {args.corpus:,} x d={args.dim}, {args.queries:,} queries, {args.negatives} negatives, settings {settings}")
    print(markdown(result))


if __name__ == "__main__":
    main()
