"""`check_selector_worlds`: a selector must return at every world size what it returns alone.

The check runs the selector over one pool of given per-item arrays, first in this process (world
size 1), then on ``W`` gloo ranks for each ``W`` in ``worlds`` (one process each, started with
``python -m selectkit.worlds``, meeting through a ``file://`` store), and compares every array of
the results bit for bit. The pool is cut in small logical blocks so that every rank owns rows.
The selector is named by its class (importable in a fresh process: an installed plugin's class) and
its parameters, so the ranks build it themselves.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

_FIELDS = ("indices", "weights", "scores", "anchors", "positives", "negatives", "positive_scores", "negative_scores")


def result_arrays(result: Any) -> dict[str, np.ndarray]:
    """The arrays of a selection result by name (indices, weights, scores, tuples, synthetic rows)."""
    found = {f: np.asarray(getattr(result, f)) for f in _FIELDS if getattr(result, f, None) is not None}
    synthetic = getattr(result, "synthetic", None)
    if synthetic is not None:
        found["synthetic_features"] = np.asarray(synthetic.features)
        found["synthetic_parents"] = np.asarray(synthetic.parents)
    return found


def _pool(arrays: Mapping[str, np.ndarray], comm: Any, block_rows: int, labelled: Sequence[int] | None) -> Any:
    from selectkit.pool import Pool

    n = int(next(iter(arrays.values())).shape[0])

    def provider(name: str):
        return lambda ids, **_: np.asarray(arrays[name][np.asarray(ids, dtype=np.int64)])

    providers = {name: provider(name) for name in arrays}
    if labelled is None:
        return Pool(n, providers=providers, comm=comm, block_rows=block_rows)
    known = np.asarray(sorted(labelled), dtype=np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), known)
    return Pool(rest, providers=providers, comm=comm, block_rows=block_rows, labelled=Pool(known, providers=providers))


def _select(spec: Mapping[str, Any], comm: Any) -> dict[str, np.ndarray]:
    from selectkit.selector import SelectContext

    module, _, name = spec["selector"].partition(":")
    cls = getattr(importlib.import_module(module), name)
    with np.load(spec["arrays"]) as z:
        arrays = {k: z[k] for k in z.files}
    selector = cls(**spec["params"])
    pool = _pool(arrays, comm, int(spec["block_rows"]), spec.get("labelled"))
    return result_arrays(selector.select(pool, SelectContext(**spec["ctx"])))


def check_selector_worlds(
    selector: type,
    params: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    worlds: Sequence[int] = (2, 4),
    labelled: Sequence[int] | None = None,
    seed: int = 0,
    epoch: int = 0,
    round: int = 0,
    block_rows: int | None = None,
    timeout_s: float = 300.0,
) -> dict[str, np.ndarray]:
    """Assert that ``selector(**params)`` selects the same at each world size in ``worlds`` as alone.

    Args:
        selector: the selector class (importable by its module path in a fresh process).
        params: its constructor parameters (JSON types).
        arrays: the pool's providers by name, one row per item (``labels``, ``features``, ``probs``...).
        worlds: the world sizes to compare with world size 1.
        labelled: pool positions already labelled (an acquisition's ``pool.labelled``); the pool is the rest.
        seed, epoch, round: the `SelectContext`.
        block_rows: rows per logical block (default: small enough that each rank of the largest world
            owns at least two blocks).
        timeout_s: limit on each world's run, and the ranks' collective timeout.

    Returns the world-1 result's arrays. Raises ``AssertionError`` naming the world and the array that
    differs, or the error a rank raised.
    """
    n = int(next(iter(arrays.values())).shape[0])
    if block_rows is None:
        block_rows = max(1, -(-n // (2 * max(worlds, default=1))))
    spec = {
        "selector": f"{selector.__module__}:{selector.__qualname__}",
        "params": dict(params),
        "block_rows": int(block_rows),
        "labelled": None if labelled is None else [int(i) for i in labelled],
        "ctx": {"seed": int(seed), "epoch": int(epoch), "stage": 0, "round": int(round)},
        "timeout_s": float(timeout_s),
    }
    with tempfile.TemporaryDirectory(prefix="selectkit-worlds-") as tmp:
        folder = Path(tmp)
        np.savez(folder / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        spec["arrays"] = str(folder / "arrays.npz")
        alone = _select(spec, None)
        for world in worlds:
            out = folder / f"w{world}"
            out.mkdir()
            (out / "spec.json").write_text(json.dumps(spec))
            env = dict(os.environ, OMP_NUM_THREADS="1")
            procs = [
                subprocess.Popen([sys.executable, "-m", "selectkit.worlds", str(out), str(world), str(rank)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for rank in range(world)
            ]
            try:
                logs = [p.communicate(timeout=timeout_s)[0] for p in procs]
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            for rank, p in enumerate(procs):
                err = out / f"rank{rank}.err"
                assert p.returncode == 0, f"world {world}, rank {rank} failed: {err.read_text() if err.exists() else logs[rank][-2000:]}"
            for rank in range(world):
                with np.load(out / f"rank{rank}.npz") as z:
                    got = {k: z[k] for k in z.files}
                assert sorted(got) == sorted(alone), f"world {world}, rank {rank}: result arrays {sorted(got)} differ from world 1's {sorted(alone)}"
                for key, value in alone.items():
                    assert np.array_equal(value, got[key]), f"world {world}, rank {rank}: {key} differs from world 1's"
    return alone


def _rank_main(folder: str, world: int, rank: int) -> None:
    """One rank of `check_selector_worlds`: select, save the result (or the error) into ``folder``."""
    import torch

    from selectkit.distributed import init_process_group

    out = Path(folder)
    spec = json.loads((out / "spec.json").read_text())
    torch.set_num_threads(1)
    try:
        comm = init_process_group("gloo", timeout_s=spec["timeout_s"], init_method=f"file://{out / 'store'}", world_size=world, rank=rank)
        result = _select(spec, comm)
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        (out / f"rank{rank}.err").write_text(f"{type(err).__name__}: {err}")
        sys.stdout.flush()
        os._exit(1)  # no teardown: a peer may be gone
    np.savez(out / f"rank{rank}.npz", **result)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _rank_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
