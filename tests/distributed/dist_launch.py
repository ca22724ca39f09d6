"""Launching gloo ranks on CPU for the distributed tests (`dist_ranks.py` runs each one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RANKS = Path(__file__).with_name("dist_ranks.py")


class Ranks:
    """The processes of one run: ``procs`` (one per rank) writing into ``out``."""

    def __init__(self, scenario: str, world: int, out: Path, **params: object) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        store = out / "store"
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(RANKS), scenario, str(world), str(r), str(store), str(out), json.dumps(params)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            for r in range(world)
        ]

    def error(self, rank: int) -> str | None:
        """The error rank ``rank`` recorded, if any."""
        path = self.out / f"rank{rank}.err"
        return path.read_text() if path.exists() else None

    def kill(self) -> None:
        """End every rank still running."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def run_ranks(scenario: str, world: int, out: Path, timeout: float = 120, **params: object) -> list[dict]:
    """Run ``scenario`` on ``world`` ranks; every rank must succeed. Returns each rank's saved arrays."""
    ranks = Ranks(scenario, world, out, **params)
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in ranks.procs]
    finally:
        ranks.kill()
    for r, p in enumerate(ranks.procs):
        assert p.returncode == 0, f"rank {r} of {world} failed ({ranks.error(r)}):\n{logs[r][-3000:]}"
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(world)]


def merged(results: list[dict]) -> dict:
    """One world's results: ``local:`` keys concatenated in rank order, the others checked equal on every rank."""
    out = {}
    for key in results[0]:
        if key.startswith("local:"):
            out[key[6:]] = np.concatenate([r[key] for r in results])
        else:
            for rank, r in enumerate(results[1:], 1):
                assert np.array_equal(r[key], results[0][key]), f"{key}: rank {rank} differs from rank 0"
            out[key] = results[0][key]
    return out
