"""Hard-negative mining: selectkit's ``hard_negatives`` against sentence-transformers' ``mine_hard_negatives``.

Both mine the same precomputed, L2-normalised embeddings (a corpus of documents and a set of queries,
one positive document per query) with the same filters and exact search. Each method runs in a fresh
subprocess so its peak resident memory is its own; the parent compares the negatives row by row.

sentence-transformers embeds texts with a model; it is handed the precomputed embeddings through
`Precomputed`, a minimal encoder whose ``encode_query`` / ``encode_document`` return the stored
arrays for the texts ``q<i>`` / ``d<j>`` and whose ``similarity`` functions are sentence-transformers'
own ``cos_sim`` / ``pairwise_cos_sim`` (what a cosine model uses).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_data(path: Path, corpus: int, queries: int, dim: int, seed: int = 0) -> Path:
    """Clustered unit vectors: ``[queries + corpus, dim]`` float32 (queries first) and each query's
    positive document, saved as ``<path>.npy`` and ``<path>.positives.npy`` (reused when present)."""
    vec, pos = path.with_suffix(".npy"), path.with_suffix(".positives.npy")
    if vec.exists() and pos.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(16, corpus // 1000), dim), dtype=np.float32)
    x = np.empty((queries + corpus, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, corpus, step):
        rows = min(step, corpus - start)
        block = centers[rng.integers(0, centers.shape[0], size=rows)] + 1.2 * rng.standard_normal((rows, dim), dtype=np.float32)
        x[queries + start : queries + start + rows] = block
    positives = rng.choice(corpus, size=queries, replace=False).astype(np.int64)
    x[:queries] = x[queries + positives] + 0.9 * rng.standard_normal((queries, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(vec, x)
    np.save(pos, positives)
    return path


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Precomputed:
    """The encoder sentence-transformers' ``mine_hard_negatives`` calls, over stored embeddings."""

    def __init__(self, queries: np.ndarray, documents: np.ndarray) -> None:
        import torch

        self.queries = queries
        self.documents = documents
        self.device = torch.device("cpu")

    def _lookup(self, texts: list[str], prefix: str, table: np.ndarray) -> np.ndarray:
        rows = np.fromiter((int(t[1:]) for t in texts), dtype=np.int64, count=len(texts))
        if rows.size == table.shape[0] and rows[0] == 0 and rows[-1] == rows.size - 1 and np.all(np.diff(rows) == 1):
            return table
        return table[rows]

    def encode_query(self, texts: list[str], **_: Any) -> np.ndarray:
        """The stored query embeddings of ``q<i>`` texts (already unit length)."""
        return self._lookup(texts, "q", self.queries)

    def encode_document(self, texts: list[str], **_: Any) -> np.ndarray:
        """The stored document embeddings of ``d<j>`` texts (already unit length)."""
        return self._lookup(texts, "d", self.documents)

    def similarity(self, a: Any, b: Any) -> Any:
        """Cosine similarity matrix, as a cosine SentenceTransformer computes it."""
        from sentence_transformers.util import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        """Row-wise cosine similarity, as a cosine SentenceTransformer computes it."""
        from sentence_transformers.util import pairwise_cos_sim

        return pairwise_cos_sim(a, b)

    def get_embedding_dimension(self) -> int:
        """The embedding width."""
        return int(self.documents.shape[1])


def run_method(method: str, data: Path, settings: dict[str, Any], out: Path) -> None:
    """Mine with one method in this process; write ``<out>.npz`` (negatives ``[queries, k]``, -1 for a
    dropped query) and ``<out>.json`` (seconds, peak and baseline resident memory)."""
    x = np.load(data.with_suffix(".npy"))
    positives = np.load(data.with_suffix(".positives.npy"))
    nq = positives.shape[0]
    k = settings["negatives"]
    if method == "selectkit":
        from selectkit.providers import pairs_provider
        from selectkit.selector import Pool, SelectContext
        from selectkit_plugins.hard_negatives import HardNegatives

        sel = HardNegatives(
            negatives=k, space="vectors", metric="cosine", positives="pairs", depth=settings["range_max"] + 1, max_depth=settings["range_max"] + 1,
            rank_min=settings["range_min"], rank_max=settings["range_max"], relative_margin=settings.get("relative_margin"),
            absolute_margin=settings.get("absolute_margin"), max_score=settings.get("max_score"), on_short="skip",
        )
        base = _rss_kb()
        start = time.perf_counter()
        pool = Pool(x.shape[0], providers={"pairs": pairs_provider(np.arange(nq), nq + positives)}, vectors=x)
        result = sel.select(pool, SelectContext(seed=0))
        seconds = time.perf_counter() - start
        neg = np.full((nq, k), -1, dtype=np.int64)
        neg[result.anchors] = result.negatives - nq
        meta = {"removed": result.meta["removed"], "skipped_short": result.meta["skipped_short"]}
    else:
        from datasets import Dataset
        from sentence_transformers.util import mine_hard_negatives

        queries, documents = x[:nq], x[nq:]
        corpus = [f"d{j}" for j in range(documents.shape[0])]
        dataset = Dataset.from_dict({"query": [f"q{i}" for i in range(nq)], "answer": [f"d{p}" for p in positives]})
        model = Precomputed(queries, documents)
        base = _rss_kb()
        start = time.perf_counter()
        mined = mine_hard_negatives(
            dataset, model, corpus=corpus, range_min=settings["range_min"], range_max=settings["range_max"],
            relative_margin=settings.get("relative_margin"), absolute_margin=settings.get("absolute_margin"), max_score=settings.get("max_score"),
            num_negatives=k, sampling_strategy="top", output_format="n-tuple", output_scores=True,
            use_faiss=method == "st_faiss", faiss_batch_size=settings["exact_batch"] if method == "st_exact" else 16384, verbose=False,
        )
        seconds = time.perf_counter() - start
        neg = np.full((nq, k), -1, dtype=np.int64)
        rows = np.array([int(q[1:]) for q in mined["query"]], dtype=np.int64)
        for j in range(k):
            neg[rows, j] = [int(t[1:]) for t in mined[f"negative_{j + 1}"]]
        meta = {"rows": len(mined)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.savez(out.with_suffix(".npz"), negatives=neg)
    out.with_suffix(".json").write_text(json.dumps({"method": method, "seconds": seconds, "peak_rss_gb": peak / 2**20, "baseline_rss_gb": base / 2**20, **meta}))


def compare(data: Path, settings: dict[str, Any], methods: list[str], rounds: int, out_dir: Path) -> dict[str, Any]:
    """Each method ``rounds`` times, interleaved, in fresh subprocesses; agreement of each peer with selectkit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve().parents[1] / "bench_hard_negatives.py"
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in range(rounds):
        for method in methods:
            target = out_dir / f"{method}_{r}"
            cmd = [sys.executable, str(script), "--worker", method, "--data", str(data), "--settings", json.dumps(settings), "--result", str(target)]
            subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONHASHSEED="0"))
            runs[method].append(json.loads(target.with_suffix(".json").read_text()))
            time.sleep(1.0)
    ours = np.load(out_dir / "selectkit_0.npz")["negatives"]
    table = []
    for method in methods:
        neg = np.load(out_dir / f"{method}_0.npz")["negatives"]
        both = (ours[:, 0] >= 0) & (neg[:, 0] >= 0)
        same_rows = (ours == neg).all(axis=1)
        best = min(runs[method], key=lambda row: row["seconds"])
        table.append({
            "method": method,
            "best_s": round(best["seconds"], 2),
            "all_s": [round(row["seconds"], 2) for row in runs[method]],
            "peak_rss_gb": round(max(row["peak_rss_gb"] for row in runs[method]), 2),
            "working_gb": round(max(row["peak_rss_gb"] - row["baseline_rss_gb"] for row in runs[method]), 2),
            "queries_mined": int((neg[:, 0] >= 0).sum()),
            "same_rows_as_selectkit": round(float(same_rows.mean()), 6),
            "same_negative_sets": round(float(np.mean([set(a) == set(b) for a, b in zip(ours[both].tolist(), neg[both].tolist())])) if both.any() else 0.0, 6),
            "extra": {k: v for k, v in best.items() if k not in ("method", "seconds", "peak_rss_gb", "baseline_rss_gb")},
        })
    ref = next(row for row in table if row["method"] == "selectkit")["best_s"]
    for row in table:
        row["speedup_of_selectkit"] = round(row["best_s"] / ref, 2)
    return {"settings": settings, "rounds": rounds, "table": table}


def markdown(result: dict[str, Any]) -> str:
    """The comparison as a markdown table."""
    lines = [
        "| method | best s (all rounds) | selectkit faster by | peak RSS GB (working GB) | queries kept | rows identical to selectkit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["table"]:
        lines.append(
            f"| {row['method']} | {row['best_s']} ({', '.join(map(str, row['all_s']))}) | {row['speedup_of_selectkit']}x | "
            f"{row['peak_rss_gb']} ({row['working_gb']}) | {row['queries_mined']} | {100 * row['same_rows_as_selectkit']:.2f}% |"
        )
    return "\n".join(lines)
