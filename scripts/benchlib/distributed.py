"""Selection over several processes, measured: behind ``scripts/bench_distributed.py``.

A pool of clustered float32 features (``--clusters`` Gaussian blobs, ``--rows`` x ``--d``) and a
``[rows, classes]`` probs array are written once as ``.npy`` files under ``--data`` and memory-mapped
by every run. Each method runs as its own processes, one per rank:

* ``margin``, ``sensitivity``, ``leverage`` and ``random`` (the app with a selection that keeps
  ``budget`` ids and nothing per item: what the app itself costs) through ``selectkit-select``:
  ``python -m torch.distributed.run --standalone --nproc_per_node W -m selectkit.select data=arrays
  data.train=<x.npy> ...``, and at world 1 also the plain ``selectkit-select``;
* ``knn``: `selectkit.distributed.sharded_knn` of ``--queries`` rows against the pool, run in the
  ranks directly (``bench_distributed.py knn-rank``, the same launcher).

Three measurements:

* **memory**: the peak private (anonymous) memory of every rank process, ``RssAnon`` of
  ``/proc/<pid>/status`` sampled every ``--interval`` seconds (the kernel keeps no peak of it).
  RSS, also recorded, counts the pages of the mapped pool file each rank has touched, which are page
  cache shared by every process reading the file.
* **communication**: ``Comm.bytes_sent`` of each rank during the selection (``select.json``), next to
  the traffic docs/distributed.md's formulas give for the same ``n, d, k, B, W``.
* **time**: ``select_s`` at world 1 with 2 threads against world 2 with 1 thread per rank (equal
  total threads), and world 1 with 1 thread, repeats interleaved, median and range.

Every run's selection is digested: the same digest at every world size is the world-size invariance
the collectives promise, checked on the benchmark's own pool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

METHODS = ("margin", "knn", "sensitivity", "leverage", "random")
#: selectkit-select overrides of each method run through the app (``{B}`` the budget, ``{clusters}`` sensitivity's
#: k-means k, ``{probs}`` the probs file)
APP_OVERRIDES = {
    "margin": ["selector=margin", "selector.budget={B}", "+outputs.probs={probs}"],
    "sensitivity": [
        "selector=sensitivity", "selector.embedding=features", "selector.cluster_term=size", "selector.by_label=false",
        "selector.size={B}", "selector.k={clusters}",
    ],
    "leverage": ["selector=leverage", "selector.budget={B}"],
    "random": ["selector=random", "selector.budget={B}"],
}
SCRIPT = Path(__file__).resolve().parents[1] / "bench_distributed.py"
GIB = 2**30


# ------------------------------------------------------------------------------------------ the pool
@dataclass(frozen=True)
class PoolFiles:
    """The benchmark's pool: ``x.npy`` ``[rows, d]``, ``probs.npy`` ``[rows, classes]``, ``queries_<nq>.npy``."""

    folder: Path
    rows: int
    d: int
    classes: int
    queries: int

    @property
    def x(self) -> Path:
        """The features, float32 ``[rows, d]``."""
        return self.folder / "x.npy"

    @property
    def probs(self) -> Path:
        """Class probabilities, float32 ``[rows, classes]`` (rows sum to 1)."""
        return self.folder / "probs.npy"

    @property
    def q(self) -> Path:
        """kNN queries drawn from the same blobs, float32 ``[queries, d]``."""
        return self.folder / f"queries_{self.queries}.npy"


def make_pool(root: Path, rows: int, d: int, clusters: int, classes: int, queries: int, seed: int, chunk: int = 1_000_000) -> PoolFiles:
    """The pool under ``root`` (a folder per size and seed), written once and reused while ``meta.json`` matches;
    the ``queries`` file is written once per count.

    Rows come from ``clusters`` isotropic unit Gaussians whose centres are drawn with standard deviation
    3 per coordinate (blob sizes from a Dirichlet(2) draw). Probs are the softmax of a per-blob logit
    vector (scale 2) plus per-row noise (scale 1), so margins vary by blob. Each chunk of rows has its
    own generator from ``(seed, chunk index)``.
    """
    folder = Path(root) / f"blobs_{rows}x{d}_c{clusters}_k{classes}_s{seed}"
    meta = {"rows": rows, "d": d, "clusters": clusters, "classes": classes, "seed": seed}
    files = PoolFiles(folder, rows, d, classes, queries)
    rng = np.random.default_rng([seed, 0])
    centres = rng.normal(0.0, 3.0, size=(clusters, d))
    logits = rng.normal(0.0, 2.0, size=(clusters, classes))
    share = rng.dirichlet(np.full(clusters, 2.0))

    def draw(gen: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` rows of the blob mixture and their blobs."""
        blob = gen.choice(clusters, size=count, p=share)
        x = gen.standard_normal((count, d), dtype=np.float32)
        x += centres[blob].astype(np.float32)
        return x, blob

    if (folder / "meta.json").is_file() and json.loads((folder / "meta.json").read_text()) == meta:
        if not files.q.is_file():
            np.save(files.q, draw(np.random.default_rng([seed, 2, queries]), queries)[0])
        return files
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    x_out = np.lib.format.open_memmap(folder / "x.partial.npy", mode="w+", dtype=np.float32, shape=(rows, d))
    p_out = np.lib.format.open_memmap(folder / "probs.partial.npy", mode="w+", dtype=np.float32, shape=(rows, classes))
    for i, start in enumerate(range(0, rows, chunk)):
        gen = np.random.default_rng([seed, 1, i])
        x, blob = draw(gen, min(chunk, rows - start))
        z = logits[blob] + gen.standard_normal((x.shape[0], classes))
        z = np.exp(z - z.max(axis=1, keepdims=True))
        x_out[start : start + x.shape[0]] = x
        p_out[start : start + x.shape[0]] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    x_out.flush()
    p_out.flush()
    del x_out, p_out
    np.save(files.q, draw(np.random.default_rng([seed, 2, queries]), queries)[0])
    os.replace(folder / "x.partial.npy", files.x)
    os.replace(folder / "probs.partial.npy", files.probs)
    (folder / "meta.json").write_text(json.dumps(meta))
    return files


# ---------------------------------------------------------------------------------- memory sampling
def _status(pid: int) -> dict[str, int]:
    """``RssAnon`` and ``VmRSS`` of ``pid`` in bytes (empty once the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return out


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from every thread's ``children`` list)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                kids.extend(int(v) for v in fh.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return kids


def _rank_of(pid: int) -> int | None:
    """The ``RANK`` a launcher gave process ``pid`` (None for a process it did not start as a rank)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(env[b"RANK"]) if b"LOCAL_RANK" in env and b"RANK" in env else None


class PeakSampler(threading.Thread):
    """Samples the private memory of every process under ``root`` until `stop`; peaks per rank.

    The rank processes are those a launcher started with ``RANK`` and ``LOCAL_RANK`` in their
    environment; without a launcher, ``root`` itself is rank 0. ``limit_bytes`` guards the machine:
    when the ranks' private memory together passes it, the run's process group is killed and
    ``stopped_at`` records the total.
    """

    def __init__(self, root: int, interval: float, limit_bytes: float | None) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.limit = root, interval, limit_bytes
        self.peak_anon: dict[int, int] = {}
        self.peak_rss: dict[int, int] = {}
        self.ranks: dict[int, int | None] = {}
        self.stopped_at: int | None = None
        self.samples = 0
        self._done = threading.Event()

    def _tree(self) -> list[int]:
        seen, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(_children(pid))
        return seen

    def run(self) -> None:
        """Sample until `stop`: every process under ``root``, its rank once, its peaks."""
        while not self._done.is_set():
            total = 0
            for pid in self._tree():
                now = _status(pid)
                if not now:
                    continue
                if pid not in self.ranks or self.ranks[pid] is None:
                    self.ranks[pid] = _rank_of(pid)
                self.peak_anon[pid] = max(self.peak_anon.get(pid, 0), now.get("RssAnon", 0))
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), now.get("VmRSS", 0))
                total += now.get("RssAnon", 0)
            self.samples += 1
            if self.limit is not None and total > self.limit and self.stopped_at is None:
                self.stopped_at = total
                try:
                    os.killpg(self.root, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._done.wait(self.interval)

    def stop(self) -> None:
        """End the sampling (after one last sample)."""
        self._done.set()
        self.join()

    def per_rank(self) -> dict[int, dict[str, int]]:
        """``{rank: {"anon": peak private bytes, "rss": peak RSS bytes}}``."""
        ranked = {pid: r for pid, r in self.ranks.items() if r is not None}
        if not ranked:
            ranked = {self.root: 0}
        return {r: {"anon": self.peak_anon.get(pid, 0), "rss": self.peak_rss.get(pid, 0)} for pid, r in sorted(ranked.items(), key=lambda t: t[1])}


# --------------------------------------------------------------------------------------- the runs
@dataclass
class Run:
    """One method at one world size: its command, memory per rank, bytes per rank, seconds."""

    method: str
    world: int
    launcher: str
    threads: int
    command: str
    rc: int
    wall_s: float
    select_s: float | None = None
    bytes_sent: list[int] = field(default_factory=list)
    memory: dict[int, dict[str, int]] = field(default_factory=dict)
    digest: str | None = None
    run_dir: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    part: str = "memory"
    stopped_at: int | None = None
    error: str | None = None

    @property
    def peak_anon(self) -> int:
        """The largest rank's peak private memory."""
        return max((m["anon"] for m in self.memory.values()), default=0)

    @property
    def peak_rss(self) -> int:
        """The largest rank's peak RSS."""
        return max((m["rss"] for m in self.memory.values()), default=0)


def launcher_prefix(world: int, launcher: str) -> list[str]:
    """The command that starts ``world`` ranks: torchrun, or the process itself (``plain``, world 1)."""
    if launcher == "plain":
        if world != 1:
            raise ValueError("the plain launcher runs one process")
        return []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]


def app_command(files: PoolFiles, method: str, world: int, launcher: str, run_dir: Path, budget: int, clusters: int) -> list[str]:
    """The ``selectkit-select`` command of ``method``."""
    fill = {"B": budget, "clusters": clusters, "probs": files.probs}
    overrides = [o.format(**fill) for o in APP_OVERRIDES[method]]
    app = [str(Path(sys.executable).with_name("selectkit-select"))] if launcher == "plain" else ["-m", "selectkit.select"]
    return [*launcher_prefix(world, launcher), *app, "data=arrays", f"data.train={files.x}", *overrides, f"hydra.run.dir={run_dir}"]


def knn_command(files: PoolFiles, world: int, launcher: str, out: Path, k: int, cap_gb: float) -> list[str]:
    """The command running `sharded_knn` of the pool's queries in ``world`` ranks."""
    script = [sys.executable, str(SCRIPT)] if launcher == "plain" else [str(SCRIPT)]
    args = ["knn-rank", "--pool", str(files.x), "--queries", str(files.q), "--k", str(k), "--memory-cap-gb", f"{cap_gb:g}", "--out", str(out)]
    return [*launcher_prefix(world, launcher), *script, *args]


def selection_digest(run_dir: Path) -> str | None:
    """A digest of the manifest's indices and weights (None when the run wrote none)."""
    path = run_dir / "selections" / "epoch_0000.npz"
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with np.load(path) as z:
        for name in ("indices", "weights"):
            if name in z.files:
                h.update(np.ascontiguousarray(z[name]).tobytes())
    return h.hexdigest()[:12]


def stage_meta(run_dir: Path) -> dict[str, Any]:
    """The selection's facts the manifest records (e.g. ``kmeans_iters``, ``method``), or {}."""
    path = run_dir / "selections" / "manifest.jsonl"
    if not path.is_file():
        return {}
    line = json.loads(path.read_text().splitlines()[0])
    stages = line.get("meta") or {}
    return next(iter(stages.values()), {}) if isinstance(stages, dict) and stages else {}


def run_one(
    files: PoolFiles, method: str, world: int, launcher: str, threads: int, out: Path, *, budget: int, k: int, interval: float,
    limit_gb: float | None, knn_cap_gb: float, clusters: int, tag: str = "", env: dict[str, str] | None = None,
) -> Run:
    """Run ``method`` once in ``world`` ranks with ``threads`` threads each, sampling memory throughout."""
    run_dir = out / "runs" / f"{method}_w{world}_{launcher}_t{threads}{tag}"
    if method == "knn":
        result = run_dir / "knn.json"
        cmd = knn_command(files, world, launcher, result, k, knn_cap_gb)
    else:
        result = run_dir / "select.json"
        cmd = app_command(files, method, world, launcher, run_dir, budget, clusters)
    run_dir.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS=str(threads), **(env or {}))
    start = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=SCRIPT.parents[1], start_new_session=True)
        sampler = PeakSampler(proc.pid, interval, None if limit_gb is None else limit_gb * GIB)
        sampler.start()
        rc = proc.wait()
        sampler.stop()
    run = Run(
        method, world, launcher, threads, shlex.join(cmd), rc, time.perf_counter() - start, memory=sampler.per_rank(), stopped_at=sampler.stopped_at,
        run_dir=str(run_dir),
    )
    if result.is_file():
        summary = json.loads(result.read_text())
        run.select_s, run.bytes_sent = summary["select_s"], list(summary.get("bytes_sent", []))
        run.digest = summary.get("digest") or selection_digest(run_dir)
        run.meta = stage_meta(run_dir)
    if method == "knn" and run.select_s is not None:
        parts = sorted(run_dir.glob("ids_*.npy"))
        np.save(run_dir / "ids.npy", np.concatenate([np.load(f) for f in parts]))
        for f in parts:
            f.unlink()
    if rc != 0 or run.select_s is None:
        lines = [l.strip() for l in (run_dir / "log.txt").read_text(errors="replace").splitlines()]
        said = [l for l in lines if re.match(r"([\w.]+(Error|Exceeded|Exception)|selectkit-select: error):", l)]
        run.error = (said[-1] if said else f"exit code {rc}")[:300]
    return run


# ---------------------------------------------------------------------------------- the kNN ranks
def knn_rank(argv: Sequence[str]) -> int:
    """One rank of the kNN benchmark: its contiguous share of the queries against every rank's shard.

    Rank 0 writes ``--out``: seconds of the search, each rank's ``bytes_sent`` during it, and a digest of
    the neighbour ids that does not depend on how the queries were split."""
    from selectkit.distributed import ShardedArray, sharded_knn
    from selectkit.neighbors import NeighborConfig
    from selectkit.select import start_ranks

    p = argparse.ArgumentParser(prog="bench_distributed.py knn-rank")
    p.add_argument("--pool", type=Path, required=True, help="the base, a float32 [n, d] .npy")
    p.add_argument("--queries", type=Path, required=True, help="the queries, a float32 [nq, d] .npy")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--memory-cap-gb", type=float, default=None, help="neighbors.memory_cap_gb of the search (None: the layer's default)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    comm, created = start_ranks({"backend": "gloo"})
    try:
        x = np.load(args.pool, mmap_mode="r")
        q = np.load(args.queries, mmap_mode="r")
        cuts = np.linspace(0, q.shape[0], comm.world + 1).round().astype(np.int64)
        lo, hi = int(cuts[comm.rank]), int(cuts[comm.rank + 1])
        base = ShardedArray.from_global(x, comm.layout(x.shape[0]))
        comm.barrier("start")
        start, sent = time.perf_counter(), comm.bytes_sent
        config = None if args.memory_cap_gb is None else NeighborConfig(memory_cap_gb=args.memory_cap_gb)
        _, ids = sharded_knn(comm, np.ascontiguousarray(q[lo:hi]), base, args.k, config=config)
        spent = time.perf_counter() - start
        bytes_sent = [int(b) for b in comm.all_gather_objects(comm.bytes_sent - sent, "bytes_sent")]
        np.save(args.out.with_name(f"ids_{lo:012d}.npy"), ids)
        weights = np.arange(lo + 1, hi + 1, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
        part = int(((ids.astype(np.uint64) + np.uint64(1)) * weights).sum(dtype=np.uint64))
        parts = comm.all_gather_objects(part, "digest")
        spent = max(comm.all_gather_objects(spent, "seconds"))
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if comm.rank == 0:
        digest = hashlib.sha256(str(sum(parts) % 2**64).encode()).hexdigest()[:12]
        args.out.write_text(json.dumps({"select_s": spent, "bytes_sent": bytes_sent, "world_size": comm.world, "digest": digest}))
    return 0


# ----------------------------------------------------------------------------- traffic, by formula
@dataclass(frozen=True)
class Sizes:
    """What the traffic formulas depend on (``k`` is kNN's, ``clusters`` sensitivity's k-means k,
    ``iters`` its Lloyd iterations as the manifest records them)."""

    n: int
    d: int
    k: int
    budget: int
    world: int
    queries: int
    classes: int
    clusters: int = 100
    cap: int = 256
    iters: int = 20
    block_rows: int = 65536
    tree_dims: int = 8

    def rows_of(self, rank: int) -> int:
        """Rows rank ``rank`` owns (whole logical blocks, `selectkit.distributed.ShardLayout`)."""
        from selectkit.distributed import ShardLayout

        layout = ShardLayout(self.n, self.world, rank, self.block_rows)
        return layout.hi - layout.lo

    def nodes_of(self, rank: int) -> int:
        """Block-tree nodes rank ``rank`` sends per block sum (`selectkit.distributed.shard.canonical_nodes`)."""
        from selectkit.distributed import ShardLayout
        from selectkit.distributed.shard import canonical_nodes

        layout = ShardLayout(self.n, self.world, rank, self.block_rows)
        return len(canonical_nodes(layout.blocks.start, layout.blocks.stop, layout.n_blocks))

    def block_sum(self, elements: int, rank: int) -> float:
        """Bytes rank ``rank`` sends in `Comm.block_sum` of ``elements`` float64 (its two paths, headers left out)."""
        w = self.world
        counts = [self.nodes_of(r) for r in range(w)]
        if 8 * elements * max(counts) * w <= 1 << 16:
            return (w - 1) * 8 * elements * max(counts)
        width = [(j + 1) * elements // w - j * elements // w for j in range(w)]
        return 8 * counts[rank] * (elements - width[rank]) + (w - 1) * 8 * max(width)


def traffic_margin(s: Sizes, rank: int) -> tuple[float, str]:
    """Global top-B with each winner's position and score: ``(W-1) 32 B``."""
    return (s.world - 1) * 32 * s.budget, "(W-1)·32·B"


def traffic_knn(s: Sizes, rank: int) -> tuple[float, str]:
    """Every query block broadcast (``4 d nq`` counted on each rank), candidates for the other ranks' queries."""
    cuts = np.linspace(0, s.queries, s.world + 1).round().astype(np.int64)
    mine = int(cuts[rank + 1] - cuts[rank])
    return 4 * s.d * s.queries + 12 * s.k * (s.queries - mine), "4·d·nq + 12·k·(nq − nq_r)"


def traffic_leverage(s: Sizes, rank: int) -> tuple[float, str]:
    """Leading terms: the Gram matrix and column sums by one block sum (``d^2 + d`` float64), each
    block's pivotal leftover (``24 + 4 tree_dims`` bytes) and the chosen items (16 bytes) all-gathered."""
    w = s.world
    blocks = max(math.ceil(s.rows_of(r) / s.block_rows) for r in range(w))
    value = s.block_sum(s.d * s.d + s.d, rank) + (w - 1) * (24 + 4 * s.tree_dims) * blocks + (w - 1) * 16 * math.ceil(s.budget / w)
    return value, "block_sum(d²+d) + (W-1)·(24+4·8)·B_r + (W-1)·16·m/W"


def traffic_sensitivity(s: Sizes, rank: int) -> tuple[float, str]:
    """Leading terms: pivotal's sample sort (32 bytes per item, ``(W-1)/W`` of them to other ranks), the
    training members' global top-``k cap`` (16 bytes each), k-means|| (5 all-gathers of about ``2k/W``
    candidate rows), ``I`` Lloyd block sums of ``k (d+1)`` float64, the chosen items (16 bytes)."""
    w = s.world
    train = min(s.n, s.clusters * s.cap)
    value = (
        32 * s.rows_of(rank) * (w - 1) / w + (w - 1) * 16 * train + 5 * (w - 1) * 4 * s.d * math.ceil(2 * s.clusters / w)
        + s.iters * s.block_sum(s.clusters * (s.d + 1), rank) + (w - 1) * 16 * math.ceil(s.budget / w)
    )
    return value, "32·n_r·(W-1)/W + (W-1)·16·k·cap + 5·(W-1)·4d·2k/W + I·block_sum(k(d+1)) + (W-1)·16·m/W"


FORMULAS: dict[str, Callable[[Sizes, int], tuple[float, str]]] = {
    "margin": traffic_margin, "knn": traffic_knn, "leverage": traffic_leverage, "sensitivity": traffic_sensitivity,
}


# ------------------------------------------------------------------------------------- the parts
def memory_part(files: PoolFiles, methods: Sequence[str], worlds: Sequence[int], out: Path, **kw: Any) -> list[Run]:
    """Each method at world 1 (plain and torchrun) and at each of ``worlds``, one thread per rank."""
    runs = []
    for method in methods:
        configs = [(1, "plain"), (1, "torchrun")] + [(w, "torchrun") for w in worlds if w != 1]
        for world, launcher in configs:
            run = run_one(files, method, world, launcher, 1, out, **kw)
            runs.append(run)
            print(_progress(run), flush=True)
    return runs


TIME_CONFIGS = ((1, 2), (2, 1), (1, 1))


def time_part(files: PoolFiles, methods: Sequence[str], repeats: int, out: Path, **kw: Any) -> list[Run]:
    """Each method at world 1 with 2 threads, world 2 with 1 thread per rank and world 1 with 1 thread,
    ``repeats`` times, interleaved; OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``), so
    spinning threads of the 2-thread run do not lose to other processes on a loaded machine."""
    runs = []
    for method in methods:
        for rep in range(repeats):
            for world, threads in TIME_CONFIGS:
                run = run_one(files, method, world, "torchrun", threads, out, tag=f"_r{rep}", env={"OMP_WAIT_POLICY": "PASSIVE"}, **kw)
                run.part = "time"
                runs.append(run)
                print(_progress(run), flush=True)
    return runs


def _progress(run: Run) -> str:
    mem = " ".join(f"r{r}:{m['anon'] / GIB:.2f}" for r, m in run.memory.items())
    state = f"rc {run.rc}" + (f" ({run.error})" if run.error else "")
    return f"{run.method} w{run.world} {run.launcher} t{run.threads}: select_s {run.select_s} anon GiB {mem} bytes {run.bytes_sent} digest {run.digest} {state}"


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# ------------------------------------------------------------------------------------- reporting
def _gib(b: float) -> str:
    return f"{b / GIB:.2f}"


def _bytes(b: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.2f} {unit}"
    return f"{b:.0f} B"


def memory_table(runs: Sequence[Run], worlds: Sequence[int]) -> str:
    """Peak private memory per rank at each world against world 1 (torchrun), and the goal."""
    top = max(worlds)
    head = ["method", "world 1, plain", "world 1, torchrun"] + [f"world {w}, largest rank" for w in worlds if w != 1]
    head += [f"world {top} / world 1 (goal <= 0.35)", "the same, above the app alone (random)", "same selection at every world",
             f"peak RSS world 1 / world {top}"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for method in dict.fromkeys(r.method for r in runs):
        mine = {(r.world, r.launcher): r for r in runs if r.method == method}
        one = mine.get((1, "torchrun"))
        cells = [method]
        for key in [(1, "plain"), (1, "torchrun")] + [(w, "torchrun") for w in worlds if w != 1]:
            r = mine.get(key)
            cells.append("—" if r is None else (_gib(r.peak_anon) + " GiB" if r.rc == 0 else f"failed: {r.error}"))
        far = mine.get((top, "torchrun"))
        ok = one is not None and far is not None and one.rc == 0 and far.rc == 0
        cells.append(f"**{far.peak_anon / one.peak_anon:.3f}**" if ok else "—")
        alone = {(r.world, r.launcher): r for r in runs if r.method == "random" and r.rc == 0}
        a1, a4 = alone.get((1, "torchrun")), alone.get((top, "torchrun"))
        net = ok and a1 is not None and a4 is not None and method != "random"
        cells.append(f"{(far.peak_anon - a4.peak_anon) / (one.peak_anon - a1.peak_anon):.3f}" if net else "—")
        cells.append(_same(list(mine.values()), one))
        cells.append(f"{_gib(one.peak_rss)} / {_gib(far.peak_rss)} GiB" if ok else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _same(runs: Sequence[Run], ref: Run | None) -> str:
    """Whether every run's selection is world 1's; for kNN, how many queries' neighbour ids differ."""
    done = [r for r in runs if r.rc == 0]
    digests = {r.digest for r in done}
    if len(digests) == 1 and None not in digests:
        return "yes"
    if ref is None or ref.method != "knn" or ref.rc != 0:
        return "no (digests " + ", ".join(sorted(map(str, digests))) + ")"
    base = np.load(Path(ref.run_dir) / "ids.npy")
    diff = [f"world {r.world}: {int((np.load(Path(r.run_dir) / 'ids.npy') != base).any(axis=1).sum())}" for r in done if r is not ref]
    return f"no: queries whose ids differ from world 1 (of {base.shape[0]}): " + ", ".join(diff)


def traffic_table(runs: Sequence[Run], sizes: Callable[[int, dict[str, Any]], Sizes]) -> str:
    """Bytes sent per rank (largest rank) measured, against the formula of the collectives the method ran."""
    head = ["method", "world", "measured, per rank (min to max)", "formula", "formula's value"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    seen = set()
    for r in sorted(runs, key=lambda r: (METHODS.index(r.method), r.world)):
        if r.world == 1 or r.rc != 0 or (r.method, r.world) in seen or not r.bytes_sent:
            continue
        seen.add((r.method, r.world))
        formula = FORMULAS.get(r.method)
        model = [formula(sizes(r.world, r.meta), rank) for rank in range(r.world)] if formula else []
        text = model[0][1] if model else "none: no collective"
        value = f"{_bytes(min(v for v, _ in model))} to {_bytes(max(v for v, _ in model))}" if model else "—"
        lines.append(f"| {r.method} | {r.world} | {_bytes(min(r.bytes_sent))} to {_bytes(max(r.bytes_sent))} | {text} | {value} |")
    return "\n".join(lines)


def time_table(runs: Sequence[Run]) -> str:
    """``select_s`` at world 1 x 2 threads against world 2 x 1 thread (median, range, the overhead), and
    world 2 against half of world 1 x 1 thread (a perfect split of the one-thread work)."""
    head = ["method"] + [f"world {w}, {t} thread{'s' if t > 1 else ''}{' each' if w > 1 else ''}: median (range) s" for w, t in TIME_CONFIGS]
    head += ["world 2 against world 1 x 2 threads (goal <= +10%)", "world 2 against half of world 1 x 1 thread"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for method in dict.fromkeys(r.method for r in runs):
        cells = [method]
        med = {}
        for world, threads in TIME_CONFIGS:
            got = [r.select_s for r in runs if (r.method, r.world, r.threads) == (method, world, threads) and r.rc == 0 and r.select_s is not None]
            med[world, threads] = statistics.median(got) if got else None
            cells.append(f"{med[world, threads]:.3f} ({min(got):.3f} to {max(got):.3f}), {len(got)} runs" if got else "—")
        two, one2, one1 = med[2, 1], med[1, 2], med[1, 1]
        cells.append(f"**{100 * (two / one2 - 1):+.1f}%**" if two and one2 else "—")
        cells.append(f"{100 * (two / (one1 / 2) - 1):+.1f}%" if two and one1 else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def as_dict(run: Run) -> dict[str, Any]:
    """A run for the JSON record."""
    return {**run.__dict__, "memory": {str(r): m for r, m in run.memory.items()}}


# --------------------------------------------------------------------------------- the scale model
@dataclass(frozen=True)
class Machine:
    """What the scale model assumes of a GPU cluster (one rank per GPU)."""

    fp32_flops: float = 50e12  # float32 GEMM without tensor cores (H100 SXM peak 67 TFLOPS)
    fp16_flops: float = 400e12  # fp16 tensor cores (H100 SXM dense peak 989 TFLOPS)
    net: float = 40e9  # bytes/s per GPU in a ring collective across nodes (one 400 Gb/s NDR link per GPU)
    latency: float = 50e-6  # seconds per collective call among 64 GPUs on 8 nodes
    pcie: float = 25e9  # bytes/s each way between host and GPU (Comm moves numpy arrays)
    host_stream: float = 15e9  # bytes/s one CPU core streams through numpy
    host_flops: float = 0.5e12  # host BLAS of one rank's share of the cores (14 of a 112-core node)
    sort_ns: float = 300.0  # numpy lexsort, nanoseconds per record at 10^7 records (1,100 measured on this loaded machine)
    read: float = 2e9  # bytes/s one rank reads its shard from storage
    tree_us: float = 4.4  # leverage's pivotal trees, microseconds per row (sample_s of the 20M x 64 benchmark, one loaded core)
    counter_ns: float = 150.0  # collections.Counter over a numpy array, nanoseconds per item (510 measured on this loaded machine)


def _t(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"


def scale_model(n: int = 10**9, d: int = 768, world: int = 64, ks: Sequence[int] = (1000, 100_000), iters: int = 20,
                budget: int = 10**6, nq: int = 10**6, knn_k: int = 10, classes: int = 100, cap: int = 256,
                block_rows: int = 65536, m: Machine = Machine()) -> list[tuple[str, str, str]]:
    """The figures of docs/distributed.md's scale model: ``(quantity, arithmetic, value)`` rows."""
    rows: list[tuple[str, str, str]] = []
    W, nr = world, n / world
    add = lambda what, how, value: rows.append((what, how, value))  # noqa: E731
    add("rows per rank", f"n / W = {n:.0e} / {W}", f"{nr:,.0f}")
    add("data per rank, fp16", f"{nr:,.0f} x {d} x 2 B", _bytes(nr * d * 2))
    add("the same as float32 (what providers and the layer hold)", f"{nr:,.0f} x {d} x 4 B", _bytes(nr * d * 4))
    sizes = Sizes(n, d, knn_k, budget, W, nq, classes, block_rows=block_rows)
    blocks = sorted({math.ceil(sizes.rows_of(r) / block_rows) for r in range(W)})
    nodes = [sizes.nodes_of(r) for r in range(W)]
    c_r = max(nodes)
    add("reading the shard (fp16)", f"{_bytes(nr * d * 2)} / {m.read / 1e9:g} GB/s", _t(nr * d * 2 / m.read))
    add("logical blocks per rank; block-tree nodes c_r a rank sends per block sum (bound 2 log2 B_r + 2)",
        f"{math.ceil(n / block_rows):,} blocks over {W} ranks; canonical_nodes of each rank's range", f"{' or '.join(map(str, blocks))}; {min(nodes)} to {c_r}")

    def block_sum(s: int) -> float:
        return max(sizes.block_sum(s, r) for r in range(W))

    # scored acquisition
    probs = nr * classes
    add(f"margin: probs shard (C = {classes}) as float32, and its float64 copy", f"{nr:,.0f} x {classes} x (4 + 8) B", _bytes(probs * 12))
    sent = (W - 1) * 32 * budget
    add(f"margin: bytes sent, global top-B (B = {budget:.0e})", f"(W-1) x 32 x B = {W - 1} x 32 x {budget:.0e}", _bytes(sent))
    add("margin: top-B records every rank receives and merges", f"W x B x 32 B = {W} x {budget:.0e} x 32", _bytes(W * budget * 32))
    add("margin: scoring time (numpy, one core, reads the float32 and float64 copies)", f"{_bytes(probs * 12)} / {m.host_stream / 1e9:g} GB/s",
        _t(probs * 12 / m.host_stream))
    add("margin: merging the W x B records (lexsort on every rank)", f"{W * budget:.2e} x {m.sort_ns:g} ns", _t(W * budget * m.sort_ns * 1e-9))
    add("margin: top-B collective time", f"{_bytes(sent)} / {m.net / 1e9:g} GB/s + 2 x {_bytes(W * budget * 32)} / {m.pcie / 1e9:g} GB/s (PCIe) + 4 calls x {m.latency * 1e6:g} us",
        _t(sent / m.net + 2 * W * budget * 32 / m.pcie + 4 * m.latency))
    # kNN
    flops = 2 * nr * nq * d
    add(f"kNN: search FLOPs per rank (nq = {nq:.0e}, k = {knn_k})", f"2 x {nr:,.0f} x {nq:.0e} x {d}", f"{flops:.2e}")
    add("kNN: search time, float32 GEMM / fp16 tensor cores", f"{flops:.2e} / {m.fp32_flops / 1e12:g}T ; / {m.fp16_flops / 1e12:g}T",
        f"{_t(flops / m.fp32_flops)} / {_t(flops / m.fp16_flops)}")
    knn_sent = 4 * d * nq + 12 * knn_k * (nq - nq / W)
    add("kNN: bytes sent per rank", f"4 d nq + 12 k (nq - nq/W) = 4 x {d} x {nq:.0e} + 12 x {knn_k} x {nq - nq / W:,.0f}", _bytes(knn_sent))
    nblocks = W * math.ceil(nq / W / 16384)
    add("kNN: collective calls (4 per query block)", f"4 x W x ceil(nq / W / 16384) = 4 x {nblocks}", f"{4 * nblocks}")
    add("kNN: collective time", f"{_bytes(knn_sent)} / {m.net / 1e9:g} GB/s + 2 x {_bytes(4 * d * nq)} / {m.pcie / 1e9:g} GB/s + {4 * nblocks} x {m.latency * 1e6:g} us",
        _t(knn_sent / m.net + 2 * 4 * d * nq / m.pcie + 4 * nblocks * m.latency))
    add("kNN: memory per rank besides the base", f"query block 4 x {d} x 16384 + candidates 12 x {knn_k} x {W} x 16384", _bytes(4 * d * 16384 + 12 * knn_k * W * 16384))
    # leverage
    gram_flops = 2 * nr * d * d
    add("leverage: Gram and scores, FLOPs per rank", f"2 passes x 2 x {nr:,.0f} x {d}^2", f"{2 * gram_flops:.2e}")
    add("leverage: Gram and column sums, bytes sent (block_sum, s = d^2 + d)", f"(W-1)/W x 8 x ({d}^2 + {d}) x {c_r} + (W-1) x 8 x ceil(s / W)", _bytes(block_sum(d * d + d)))
    add("leverage: Gram and scores time (host BLAS)", f"{2 * gram_flops:.2e} / {m.host_flops / 1e12:g}T", _t(2 * gram_flops / m.host_flops))
    add("leverage: the pivotal trees, one per block", f"{nr:,.0f} x {m.tree_us:g} us", _t(nr * m.tree_us * 1e-6))
    add("leverage, sensitivity: the chosen items gathered (16 B each)", f"(W-1) x 16 x m/W, m = {budget:.0e}", _bytes((W - 1) * 16 * budget / W))
    add("leverage: its state per rank", f"Gram {d}^2 x 8 B + scores {nr:,.0f} x 8 B", _bytes(d * d * 8 + nr * 8))
    # sensitivity
    k0 = ks[0]
    train = k0 * cap
    add(f"sensitivity (k = {k0:,}): k-means training members (k x max_points_per_centroid), in all and per rank", f"{k0:,} x {cap}; / W", f"{train:,}; {train / W:,.0f}")
    add("sensitivity: the training members' global top-k of keyed uniforms, bytes sent and records merged per rank",
        f"(W-1) x 16 x {train:,}; W x {train:,} x {m.sort_ns:g} ns", f"{_bytes((W - 1) * 16 * train)}; {_t(W * train * m.sort_ns * 1e-9)}")
    add("sensitivity: the final assignment of every row", f"2 x {nr:,.0f} x {k0:,} x {d} / {m.fp32_flops / 1e12:g}T", _t(2 * nr * k0 * d / m.fp32_flops))
    add("sensitivity: pivotal's sample sort, all-to-all of 32 B per open item", f"32 x {nr:,.0f} x (W-1)/W", _bytes(32 * nr * (W - 1) / W))
    add("sensitivity: the sort's two local lexsorts of about n/W records", f"2 x {nr:,.0f} x {m.sort_ns:g} ns", _t(2 * nr * m.sort_ns * 1e-9))
    add("sensitivity: state per rank besides the shard", f"labels, distances, bounds, p, pi: 6 x 8 B x {nr:,.0f}; the sorted run: <= 2 x 32 B x {nr:,.0f}",
        f"{_bytes(48 * nr)} + {_bytes(64 * nr)}")
    # k-means, selectkit against ssl-data-curation
    for k in ks:
        cand = 1 + 5 * 2 * k
        init_round = (W - 1) * 4 * d * math.ceil(2 * k / W)
        add(f"k = {k:,}, k-means over every row (sharded_kmeans): k-means|| bytes sent per round (5 rounds)", f"(W-1) x 4d x 2k/W = {W - 1} x {4 * d} x {math.ceil(2 * k / W)}", _bytes(init_round))
        init_flops = 5 * 2 * nr * 2 * k * d
        add(f"k = {k:,}: k-means|| assignment over every row (5 rounds x 2k new candidates): FLOPs; time fp32 ; fp16", f"5 x 2 x {nr:,.0f} x {2 * k:,} x {d}",
            f"{init_flops:.2e}; {_t(init_flops / m.fp32_flops)} ; {_t(init_flops / m.fp16_flops)}")
        add(f"k = {k:,}: candidate seeding on every rank (C = 1 + 10k = {cand:,}; k steps over C x d float64 in numpy)",
            f"{k:,} x {_bytes(cand * d * 8)} / {m.host_stream / 1e9:g} GB/s", _t(k * cand * d * 8 / m.host_stream))
        add(f"k = {k:,}: 10 weighted Lloyd iterations on the candidates, every rank", f"10 x 2 x {cand:,} x {k:,} x {d} / {m.fp32_flops / 1e12:g}T",
            _t(10 * 2 * cand * k * d / m.fp32_flops))
        lloyd = block_sum(k * (d + 1))
        add(f"k = {k:,}: bytes per Lloyd iteration (block_sum, s = k(d+1)); with reduce='rank'", f"(W-1)/W x 8 x {k * (d + 1):,} x {c_r} + (W-1) x 8 x ceil(s/W); 2 (W-1)/W x 8 s",
            f"{_bytes(lloyd)}; {_bytes(2 * (W - 1) / W * 8 * k * (d + 1))}")
        a_flops = 2 * nr * k * d
        add(f"k = {k:,}: assignment of every row, FLOPs and time per Lloyd iteration", f"2 x {nr:,.0f} x {k:,} x {d}; / {m.fp32_flops / 1e12:g}T ; / {m.fp16_flops / 1e12:g}T",
            f"{a_flops:.2e}; {_t(a_flops / m.fp32_flops)} ; {_t(a_flops / m.fp16_flops)}")
        add(f"k = {k:,}: Lloyd iteration's collective time", f"{_bytes(lloyd)} / {m.net / 1e9:g} GB/s + 2 x {_bytes(8 * k * (d + 1))} / {m.pcie / 1e9:g} GB/s + 4 calls",
            _t(lloyd / m.net + 2 * 8 * k * (d + 1) / m.pcie + 4 * m.latency))
        trials = 2 + int(math.log(k))
        ssl_round = (W - 1) / W * 4 * n
        add(f"k = {k:,}, ssl-data-curation: seeding rounds; bytes sent per round (all-gather of the [n] float32 distances)",
            f"k - 1 ; (W-1)/W x 4 x {n:.0e}", f"{k - 1:,} ; {_bytes(ssl_round)}")
        ssl_compute = 2 * nr * trials * d
        per = ssl_round / m.net + ssl_compute / m.fp32_flops + 4 * n / 2.5e12 + 4 * m.latency
        add(f"k = {k:,}, ssl-data-curation: time per seeding round; all k - 1 rounds",
            f"{_bytes(ssl_round)} / {m.net / 1e9:g} GB/s + 2 x {nr:,.0f} x {trials} x {d} / {m.fp32_flops / 1e12:g}T + rank 0's cumsum of 4n B at 2.5 TB/s",
            f"{_t(per)} ; {_t(per * (k - 1))}")
        ssl_lloyd = 2 * (W - 1) / W * 4 * k * d + (W - 1) / W * 8 * n
        add(f"k = {k:,}, ssl-data-curation: bytes per Lloyd iteration (all-reduce of k x d, all-gather of [n] int64 labels)",
            f"2 (W-1)/W x 4 x {k:,} x {d} + (W-1)/W x 8 x {n:.0e}", _bytes(ssl_lloyd))
        add(f"k = {k:,}, ssl-data-curation: time per Lloyd iteration besides the assignment (the labels' all-gather, collections.Counter over [n] on every rank)",
            f"{_bytes(ssl_lloyd)} / {m.net / 1e9:g} GB/s + {n:.0e} x {m.counter_ns:g} ns", _t(ssl_lloyd / m.net + n * m.counter_ns * 1e-9))
    add("ssl-data-curation: O(n) state on every rank", "squared norms [n] + distances [n] (float32) + the all-gather's W parts and their concatenation",
        f"{_bytes(4 * n)} + {_bytes(4 * n)} + {_bytes(8 * n)} transient")
    return rows


def scale_markdown(rows: Sequence[tuple[str, str, str]]) -> str:
    """The scale model as a markdown table."""
    lines = ["| quantity | arithmetic | value |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def report(record: dict[str, Any]) -> str:
    """The markdown tables of a run's record (``<out>/bench_distributed.json``)."""
    a = record["args"]
    runs = [Run(**{**r, "memory": {int(k): v for k, v in r["memory"].items()}}) for r in record["runs"]]
    mem_runs = [r for r in runs if r.part == "memory"]
    time_runs = [r for r in runs if r.part == "time"]

    def sizes(world: int, meta: dict[str, Any]) -> Sizes:
        return Sizes(a["rows"], a["d"], a["k"], a["budget"], world, a["queries"], a["classes"], clusters=a["clusters_k"], iters=int(meta.get("kmeans_iters", 20)))

    md = []
    if mem_runs:
        md += ["Peak private memory per rank (GiB):", "", memory_table(mem_runs, [1, *a["worlds"]]), ""]
    if time_runs:
        md += ["Selection seconds at equal total threads:", "", time_table(time_runs), ""]
    md += ["Bytes sent per rank:", "", traffic_table(runs, sizes), ""]
    return "\n".join(md) + f"\nload average at start {record['load_start']}, at end {record['load_end']}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``scripts/bench_distributed.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["knn-rank"]:
        return knn_rank(argv[1:])
    if argv[:1] == ["scale-model"]:
        print(scale_markdown(scale_model()))
        return 0
    if argv[:1] == ["report"]:
        print(report(json.loads(Path(argv[1]).read_text())))
        return 0
    p = argparse.ArgumentParser(prog="bench_distributed.py", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("outputs/bench_distributed/data"), help="folder the pool is written to once")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--clusters", type=int, default=64, help="Gaussian blobs the pool is drawn from")
    p.add_argument("--classes", type=int, default=10, help="columns of the probs array margin reads")
    p.add_argument("--queries", type=int, default=10_000, help="kNN queries, split over the ranks")
    p.add_argument("--k", type=int, default=10, help="kNN neighbours")
    p.add_argument("--clusters-k", type=int, default=100, help="sensitivity's k-means clusters (selector.k)")
    p.add_argument("--budget", type=int, default=10_000, help="B: items every selection keeps")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--parts", nargs="+", default=["memory", "time"], choices=["memory", "time"])
    p.add_argument("--worlds", type=int, nargs="+", default=[4], help="world sizes of the memory part besides world 1")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration in the time part")
    p.add_argument("--time-methods", nargs="+", default=None, choices=METHODS, help="methods of the time part (default: --methods but random)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between memory samples")
    p.add_argument("--knn-memory-cap-gb", type=float, default=16.0, help="neighbors.memory_cap_gb of the kNN ranks (the layer's 8 refuses a 20M x 64 index)")
    p.add_argument("--limit-gb", type=float, default=18.0, help="kill a run whose ranks hold more private memory than this together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/bench_distributed"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files = make_pool(args.data, args.rows, args.d, args.clusters, args.classes, args.queries, args.seed)
    print(f"pool {files.folder} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    kw = dict(budget=args.budget, k=args.k, clusters=args.clusters_k, interval=args.interval, limit_gb=args.limit_gb, knn_cap_gb=args.knn_memory_cap_gb)
    record: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.1f} GiB",
        "load_start": _load(),
    }
    runs: list[Run] = []
    if "memory" in args.parts:
        runs += memory_part(files, args.methods, args.worlds, args.out, **kw)
    if "time" in args.parts:
        timed = args.time_methods or [m for m in args.methods if m != "random"]
        runs += time_part(files, timed, args.repeats, args.out, **kw)
    record["load_end"] = _load()
    record["runs"] = [as_dict(r) for r in runs]
    (args.out / "bench_distributed.json").write_text(json.dumps(record, indent=1))
    text = report(record)
    (args.out / "bench_distributed.md").write_text(text)
    print(text)
    return 0
