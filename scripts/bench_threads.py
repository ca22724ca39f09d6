"""Seconds per MLP training step under each thread setting, with and without other busy processes.

    python scripts/bench_threads.py [--steps 40] [--rounds 3] [--load 2] [--batch 256]

Each setting runs in a fresh process (thread settings act when torch loads its OpenMP runtime): the step of
`selectkit.models.MLP` (784 -> 256 -> 128 -> 10, dropout 0.1) under cross-entropy and Adam on a fixed
random batch, with no Lightning around it; a few warm-up steps, then ``--steps`` steps timed one by
one. ``--load`` busy Python loops run beside every timed process (0: none). Settings are interleaved
over ``--rounds`` rounds, so a change in the machine's other load hits all of them alike. A process
stops timing after ``--limit`` seconds of steps (counted in the table; the steps it did count). Prints
one Markdown table: the median and the 90th percentile of the seconds per step, over all rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

#: leverage's exact scores of 100,000 x 64 rows, run before the timed steps
_LEVERAGE = (
    "import numpy as np; from selectkit_plugins.leverage.scores import Blocks, exact_scores; "
    "exact_scores(Blocks.of(np.random.default_rng(0).standard_normal((100_000, 64)).astype(np.float32)))"
)

#: name -> (environment overrides, code the child runs first, before it imports torch)
SETTINGS = {
    "default (2 threads, spin-waits)": ({}, ""),
    "OMP_NUM_THREADS=1": ({"OMP_NUM_THREADS": "1"}, ""),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, ""),
    "selectkit-train (prefer_passive_waits)": ({}, "from selectkit.threads import prefer_passive_waits; prefer_passive_waits()"),
    "default, after leverage scores": ({}, _LEVERAGE),
}

_CHILD = r"""
import json, sys, time
{setup}
import torch
from selectkit.models import MLP
steps, batch, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
gen = torch.Generator().manual_seed(0)
x = torch.randn(batch, 784, generator=gen)
y = torch.randint(0, 10, (batch,), generator=gen)
torch.manual_seed(0)
model = MLP(in_features=784, hidden=[256, 128], num_classes=10, dropout=0.1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()

def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()

for _ in range(5):
    step()
times = []
start = time.perf_counter()
while len(times) < steps and time.perf_counter() - start < limit:
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({{"times": times, "threads": torch.get_num_threads(), "stopped": len(times) < steps}}))
"""


def _busy(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", type=int, default=2, help="busy processes beside each timed one")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--limit", type=float, default=30.0, help="seconds of timed steps per process at most")
    args = ap.parse_args()

    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_NUM_THREADS", "SELECTKIT_OMP_WAIT_POLICY")}
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    threads: dict[str, int] = {}
    stopped: dict[str, int] = {name: 0 for name in SETTINGS}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, (env, setup) in SETTINGS.items():
            busy = _busy(args.load)
            try:
                time.sleep(0.2)
                out = subprocess.run(
                    [sys.executable, "-c", _CHILD.format(setup=setup), str(args.steps), str(args.batch), str(args.limit)],
                    env={**base, **env}, check=True, capture_output=True, text=True,
                )
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
            got = json.loads(out.stdout.strip().splitlines()[-1])
            results[name] += got["times"]
            threads[name] = got["threads"]
            stopped[name] += int(got["stopped"])
    print(
        f"Machine: {os.cpu_count()} CPUs; {args.load} busy processes beside each run; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after. {args.rounds} rounds x {args.steps} steps, batch {args.batch}.\n"
    )
    print(f"| setting | torch threads | median s/step | p90 s/step | runs stopped at {args.limit:g} s |")
    print("| --- | --- | --- | --- | --- |")
    for name, times in results.items():
        median, p90 = (f"{_quantile(times, 0.5):.4f}", f"{_quantile(times, 0.9):.4f}") if times else ("-", "-")
        print(f"| {name} | {threads.get(name, '-')} | {median} | {p90} | {stopped[name]} of {args.rounds} |")


if __name__ == "__main__":
    main()
