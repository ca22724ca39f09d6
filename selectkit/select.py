"""``selectkit-select``: run a selection pipeline over precomputed features, without training.

The pool is the ``data`` source's training split (typically ``data=arrays`` over memory-mapped
``.npy`` files of features or embeddings); its features are offered as ``features`` and, unless
``outputs.embeddings`` names another file, as ``embeddings``; ``outputs`` offers further precomputed
per-item arrays (``probs``, ``mc_probs``, ``grad_embeddings``, ``losses``) by provider name. The app
writes, in Hydra's run directory, the manifest a training run writes (``selections/manifest.jsonl``
and ``selections/epoch_NNNN.npz``) and ``select.json`` (what ran, sizes, seconds, world size, and the
bytes each rank sent during the selection, ``Comm.bytes_sent``), which
``selectkit-train selector=manifest selector.path=<run dir>`` trains on.

Under ``torchrun`` (or SLURM through the submitit launcher) every process is one rank: the process
group is created from the launcher's environment with ``distributed.backend`` and
``distributed.timeout_s``, the ranks compare a digest of their configs and of the pool before any
selection, and only rank 0 writes. Bad settings stop every rank with one line naming the setting and
exit code 2; a failed selection leaves no manifest behind.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from selectkit.errors import ConfigError, SelectkitError
from selectkit.io import atomic_write_json

#: provider names `outputs` may offer (the model outputs of a training run, precomputed)
OUTPUT_NAMES = ("embeddings", "probs", "mc_probs", "grad_embeddings", "losses")


def open_outputs(outputs: Mapping[str, Any], rows: int) -> dict[str, np.ndarray]:
    """The ``outputs`` files, memory-mapped, checked to hold one row per pool item."""
    arrays: dict[str, np.ndarray] = {}
    for name, path in (outputs or {}).items():
        if name not in OUTPUT_NAMES:
            raise ConfigError(f"outputs.{name}: not a provider this app can offer; use one of {', '.join(OUTPUT_NAMES)}")
        file = Path(str(path)).expanduser()
        if not file.is_file():
            raise ConfigError(f"outputs.{name}: {file} does not exist (give one .npy file, rows in pool order)")
        try:
            arr = np.load(file, mmap_mode="r")
        except ValueError as err:
            raise ConfigError(f"outputs.{name}: {file} is not a .npy array ({err})") from None
        if arr.shape[0] != rows:
            raise ConfigError(f"outputs.{name}: {file} has {arr.shape[0]} rows, the pool {rows}; give one row per pool item, in pool order")
        arrays[name] = arr
    return arrays


def output_provider(arr: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A provider reading the rows of a (memory-mapped) array as float32, in the order asked for."""

    def provider(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        return np.asarray(arr[ids], dtype=np.float32)

    return provider


def pool_digest(source: Any) -> str:
    """A cheap digest of the pool that ranks compare: row count, input shape, and a few sampled rows."""
    ds = source.train
    n = len(ds)
    h = hashlib.sha256(f"{n}:{tuple(ds.input_shape)}".encode())
    probe = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 16)).astype(np.int64))
    if probe.size:
        h.update(np.ascontiguousarray(ds.features(probe)).tobytes())
    return h.hexdigest()


def start_ranks(settings: Mapping[str, Any]) -> tuple[Any, bool]:
    """The `Comm` of this process: the launcher's ranks (torchrun, SLURM), or one process alone.

    Returns ``(comm, created)``: ``created`` tells whether this call made the process group (and so
    must destroy it when the selection ends)."""
    import torch.distributed as dist

    from selectkit.distributed import Comm, init_process_group

    backend = settings.get("backend", "auto")
    if backend not in ("auto", "gloo", "nccl"):
        raise ConfigError(f"distributed.backend must be one of auto, gloo, nccl, got {backend!r}")
    timeout_s = settings.get("timeout_s", 1800)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and not dist.is_initialized():
        return init_process_group(None if backend == "auto" else backend, timeout_s=timeout_s), True
    return Comm(timeout_s), False


def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Select over the pool of ``cfg.data`` with ``cfg.pipeline`` (or ``cfg.selector``); write the manifest."""
    from selectkit.console import quiet_third_party
    from selectkit.control import SelectionController
    from selectkit.distributed import check_same_config, check_same_pool, check_world, config_digest
    from selectkit.train import build_pipeline, build_source

    quiet_third_party()
    out_dir = Path(out_dir)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    epoch = cfg.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ConfigError(f"epoch must be an integer >= 0, got {epoch!r}")
    dist_cfg = cfg.get("distributed") or {}
    comm, created = start_ranks(dist_cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        check_same_config(comm, config_digest(plain), "config (the command line and its files)")
        pipeline = build_pipeline(cfg)
        source = comm.checked(lambda: build_source(cfg), "data")
        rows = len(source.train)
        check_world(rows, comm.world)
        check_same_pool(comm, rows, pool_digest(source), "data.train")
        outputs = open_outputs(cfg.get("outputs") or {}, rows)
        labels = source.train.labels()
        controller = SelectionController(
            pipeline, labels, source.train.features, out_dir=out_dir, rank=comm.rank, rows=rows, comm=comm,
            block_rows=dist_cfg.get("block_rows"), memory_cap_gb=(cfg.get("providers") or {}).get("memory_cap_gb", 4.0),
        )
        controller.model_outputs = {"embeddings": source.train.features}
        controller.model_outputs.update({name: output_provider(arr) for name, arr in outputs.items()})
        start, sent = time.perf_counter(), comm.bytes_sent
        out = controller.output(int(epoch))
        spent = time.perf_counter() - start
        bytes_sent = [int(b) for b in comm.all_gather_objects(comm.bytes_sent - sent, "bytes_sent")]
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    size = int(out.tuples.shape[0] if out.kind == "tuples" else out.ids.shape[0])
    summary = {
        "status": "completed",
        "run_name": str(cfg.run_name) if cfg.get("run_name") else pipeline.label,
        "selector": pipeline.label,
        "kind": out.kind,
        "seed": int(cfg.seed),
        "epoch": int(epoch),
        "dataset": source.meta.get("name"),
        "pool_size": rows,
        "selection_size": size,
        "weighted": out.weights is not None,
        "world_size": comm.world,
        "select_s": spent,
        "bytes_sent": bytes_sent,
        "manifest": str(out_dir / "selections"),
    }
    if comm.rank == 0:
        atomic_write_json(out_dir / "select.json", summary)
    return summary


def closing_line(summary: Mapping[str, Any], out_dir: str | Path) -> str:
    """The last console line: what was selected, in how long, and where the manifest is."""
    return (
        f"selectkit-select: done: {summary['selector']} selected {summary['selection_size']} of {summary['pool_size']} items "
        f"in {summary['select_s']:.1f} s on {summary['world_size']} rank(s); manifest in {Path(out_dir) / 'selections'}"
    )


def _rank_from_env() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)) or 0)


def shared_run_dir(argv: list[str]) -> list[str]:
    """Under a launcher of several ranks, one run directory for all of them: ``hydra.run.dir`` from the
    launcher's run id (torchrun's ``TORCHELASTIC_RUN_ID``, SLURM's job and step ids) unless the
    command line sets it, since a time-stamped folder could differ between ranks by a second."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or any(a.split("=", 1)[0].lstrip("+") == "hydra.run.dir" for a in argv):
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        return argv
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if not run_id or run_id == "none":
        run_id = "_".join(os.environ[k] for k in ("SLURM_JOB_ID", "SLURM_STEP_ID") if os.environ.get(k))
    if not run_id:
        raise ConfigError("hydra.run.dir: several ranks need one run directory; set hydra.run.dir=<folder> on the command line")
    return [*argv, f"hydra.run.dir=${{paths.output_dir}}/select/{run_id}"]


@hydra.main(version_base="1.3", config_path="pkg://selectkit_conf", config_name="select")
def _app(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out_dir = HydraConfig.get().runtime.output_dir
    try:
        summary = run(cfg, out_dir)
    except SelectkitError as err:
        print(f"selectkit-select: error: {err}", file=sys.stderr)
        sys.exit(2)
    if _rank_from_env() == 0:
        print(closing_line(summary, out_dir))


def main() -> None:
    """Console entry point of ``selectkit-select``: bad settings stop here, in one line, exit code 2."""
    from selectkit.console import entry_point

    entry_point("selectkit-select", _app, "select", prepare=shared_run_dir)


if __name__ == "__main__":
    main()
