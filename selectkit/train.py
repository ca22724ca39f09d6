"""``selectkit-train``: the Hydra application that trains a model on what a selection pipeline picks.

Every run writes, in Hydra's run directory: ``metrics.jsonl`` (one line per epoch),
``selections/epoch_NNNN.npz`` (the manifest), ``checkpoints/last.ckpt`` and, only when training
finished, ``summary.json``. Bad settings stop the run before training with a one-line error that
names the setting, and exit code 2. A round loop whose oracle waits for people's labels stops with
exit code 75 (`selectkit.oracles.WAITING_EXIT`) after saying which file to fill and how to resume.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig, OmegaConf

from selectkit.errors import ConfigError, SelectkitError
from selectkit.io import atomic_write_json
from selectkit.schema import STAGE_KEYS


# ====================================================================================== config checks
def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: keys of the ``data`` node read by the core (the loader), not passed to the data source
LOADER_KEYS = ("batch_size", "num_workers", "shuffle", "record_shards", "on_device")
#: keys of the ``model`` node read by the core (`ModelAdapter`), not passed to the network
MODEL_KEYS = ("embedding_layer", "head_layer")


def check_config(cfg: DictConfig) -> None:
    """Type and range checks of the run-level settings; `ConfigError` names the first bad one."""
    _require(_is_int(cfg.seed), "seed", "an integer", cfg.seed)
    targets = cfg.get("targets") or []
    for i, t in enumerate(targets):
        _require(_is_num(t), f"targets.{i}", "a number", t)
    tr = cfg.trainer
    _require(_is_int(tr.max_epochs) and tr.max_epochs >= 1, "trainer.max_epochs", "an integer >= 1", tr.max_epochs)
    _require(_is_int(tr.max_steps) and (tr.max_steps == -1 or tr.max_steps >= 1), "trainer.max_steps", "-1 or an integer >= 1", tr.max_steps)
    _require(_is_int(tr.devices) and tr.devices >= 1, "trainer.devices", "an integer >= 1", tr.devices)
    _require(tr.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "trainer.accelerator", "one of auto, cpu, gpu", tr.accelerator)
    retain = tr.get("retain_freed_mb", 0)
    _require(_is_num(retain) and retain >= 0, "trainer.retain_freed_mb", "a number >= 0", retain)
    every = tr.get("check_val_every_n_epoch", 1)
    _require(every is None or (_is_int(every) and every >= 1), "trainer.check_val_every_n_epoch", "null or an integer >= 1", every)
    d = cfg.data
    _require(d.get("_target_") is not None, "data._target_", "the class of a data source (e.g. selectkit.data.Arrays)", d.get("_target_"))
    _require(_is_int(d.batch_size) and d.batch_size >= 1, "data.batch_size", "an integer >= 1", d.batch_size)
    _require(_is_int(d.num_workers) and d.num_workers >= 0, "data.num_workers", "an integer >= 0", d.num_workers)
    _require(d.get("on_device", "auto") in ("auto", True, False), "data.on_device", "auto, true or false", d.get("on_device"))
    _require(cfg.model.get("_target_") is not None, "model._target_", "the class of an nn.Module", cfg.model.get("_target_"))
    o = cfg.optim
    if o.get("lr") is not None:
        _require(_is_num(o.lr) and o.lr > 0, "optim.lr", "a number > 0", o.lr)
    _require(o.get("interval", "step") in ("step", "epoch"), "optim.interval", "step or epoch", o.get("interval"))
    _require(cfg.logger.name in ("wandb", "csv", "none"), "logger.name", "one of wandb, csv, none", cfg.logger.name)
    prov = cfg.get("providers") or {}
    for key in ("batch_size",):
        if key in prov:
            _require(_is_int(prov[key]) and prov[key] >= 1, f"providers.{key}", "an integer >= 1", prov[key])
    block_rows = (cfg.get("distributed") or {}).get("block_rows")
    if block_rows is not None:
        _require(_is_int(block_rows) and block_rows >= 1, "distributed.block_rows", "an integer >= 1", block_rows)
    if "memory_cap_gb" in prov:
        _require(_is_num(prov.memory_cap_gb) and prov.memory_cap_gb > 0, "providers.memory_cap_gb", "a number > 0", prov.memory_cap_gb)
    if cfg.get("resume"):
        _require(Path(str(cfg.resume)).is_file(), "resume", "the path of an existing checkpoint file", cfg.resume)


def instantiate_node(node: Any, setting: str, *, drop: tuple[str, ...] = (), partial: bool = False, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` of ``node`` without the keys in ``drop``; any failure (a target that
    does not import, a wrong argument) becomes a one-line `ConfigError` naming ``setting``."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    container = OmegaConf.to_container(node, resolve=True)
    for key in drop:
        container.pop(key, None)
    target = container.get("_target_")
    try:
        if partial:
            kwargs["_partial_"] = True
        return instantiate(container, _convert_="all", **kwargs)
    except SelectkitError:
        raise
    except InstantiationException as err:
        cause = err.__cause__ or err
        detail = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        if isinstance(cause, SelectkitError):
            raise type(cause)(str(cause)) from None
        key, failed = _failing_target(container, setting, str(err))
        if "Error locating target" in str(err) or "Error locating target" in str(cause):
            raise ConfigError(f"{key}={failed} cannot be found: is its module installed, or in the folder you run from?") from None
        raise ConfigError(f"{key}={failed}: {_first_line(detail)}") from None
    except Exception as err:  # noqa: BLE001 - user code: report it on one line
        raise ConfigError(f"{setting}._target_={target}: {_first_line(str(err)) or type(err).__name__}") from None


def _targets(node: Any, path: str) -> list[tuple[str, str]]:
    """``(setting, value)`` of every ``_target_`` in ``node`` (a container), innermost first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = [t for key, child in items if key != "_target_" for t in _targets(child, f"{path}.{key}")]
    if isinstance(node, dict) and isinstance(node.get("_target_"), str):
        found.append((f"{path}._target_", node["_target_"]))
    return found


def _failing_target(container: Mapping[str, Any], setting: str, message: str) -> tuple[str, str]:
    """The ``_target_`` setting, and its value, that Hydra's instantiation ``message`` is about: the
    innermost one that does not import, or the one whose call failed (Hydra's ``full_key``)."""
    from hydra.utils import get_object

    nodes = _targets(container, setting)
    if "Error locating target" in message:
        for key, value in nodes:
            try:
                get_object(value)
            except Exception:  # noqa: BLE001 - any import failure is the one to report
                return key, value
    called = re.search(r"Error in call to target '([^']+)'", message)
    full_key = re.search(r"full_key: (\S+)", message)
    named = [(k, v) for k, v in nodes if called and v == called.group(1)]
    if full_key and len(named) > 1:
        flat = re.sub(r"[.\[\]]", "", f"{setting}.{full_key.group(1)}._target_")
        named = [(k, v) for k, v in named if k.replace(".", "") == flat] or named
    return named[0] if named else (f"{setting}._target_", str(container.get("_target_")))


def _first_line(text: str) -> str:
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    return lines[0] if lines else ""


def build_pipeline(cfg: DictConfig):
    """The `Pipeline` described by ``cfg.pipeline`` (stages) or, without one, by ``cfg.selector``."""
    from selectkit import registry
    from selectkit.pipeline import Pipeline, Stage

    if cfg.get("pipeline") is not None:
        stages_cfg = cfg.pipeline.get("stages")
        if not isinstance(stages_cfg, DictConfig) or len(stages_cfg) == 0:
            raise ConfigError("pipeline.stages must map stage names to selector settings")
        items = [(str(k), v, f"pipeline.stages.{k}") for k, v in stages_cfg.items()]
    else:
        if cfg.get("selector") is None:
            raise ConfigError("selector is not set; choose one with selector=<name> or set pipeline=<name>")
        items = [("", cfg.selector, "selector")]
    from selectkit.schema import validate_stage

    stages = []
    for label, node, path in items:
        spec = OmegaConf.to_container(node, resolve=True)
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{path}.name must name a selector")
        typed = validate_stage(spec, path)
        params = {k: v for k, v in typed.items() if k not in STAGE_KEYS}
        selector = registry.create(spec["name"], config_path=path, **params)
        stage = Stage(selector, schedule=typed.get("schedule"), every=typed.get("every", 1), name=label, start_epoch=typed.get("start_epoch", 0))
        stage.check(path)
        stages.append(stage)
    shared = _neighbors_settings(cfg)
    if shared is not None:
        for stage in stages:
            if "neighbors" in stage.selector.get_params() and stage.selector.neighbors is None:
                stage.selector.neighbors = dict(shared)
    pipeline = Pipeline(stages, seed=cfg.seed, config_path="pipeline" if cfg.get("pipeline") is not None else "selector")
    pipeline.check()
    rounds = cfg.get("rounds")
    epochs, setting = (rounds.get("epochs_per_round"), "rounds.epochs_per_round") if rounds is not None else ((cfg.get("trainer") or {}).get("max_epochs"), "trainer.max_epochs")
    for k, stage in enumerate(pipeline.stages):
        if _is_int(epochs) and stage.start_epoch >= epochs:
            raise ConfigError(f"{pipeline.path(k)}.start_epoch={stage.start_epoch} is not below {setting}={epochs}, so the stage would never run; lower it or train longer")
    return pipeline


def _neighbors_settings(cfg: DictConfig) -> dict | None:
    """The shared ``neighbors`` settings as NeighborConfig fields, validated; None when unset."""
    if cfg.get("neighbors") is None:
        return None
    from selectkit.neighbors import NeighborConfig

    fields = {k: v for k, v in OmegaConf.to_container(cfg.neighbors, resolve=True).items() if k != "_target_"}
    try:
        NeighborConfig(**fields)
    except TypeError as err:
        raise ConfigError(f"neighbors: {err}") from None
    return fields


def _wandb_dir(out_dir: str | Path) -> str:
    """Where W&B writes its ``wandb/`` folder: ``$WANDB_DIR`` when set, else the run directory."""
    return os.environ.get("WANDB_DIR") or str(out_dir)


def _make_logger(cfg: DictConfig, out_dir: Path, run_name: str):
    name = cfg.logger.name
    if name == "none":
        return None
    if name == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir=str(out_dir), name="csv")
    from lightning.pytorch.loggers import WandbLogger

    mode = os.environ.get("WANDB_MODE") or cfg.logger.get("mode", "offline")
    _require(mode in ("offline", "online", "disabled"), "logger.mode", "one of offline, online, disabled", mode)
    logger = WandbLogger(
        project=cfg.logger.project,
        name=run_name,
        save_dir=_wandb_dir(out_dir),
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    # Lightning passes W&B a retired `anonymous` setting, which W&B then warns about on every run
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def _progress_bar(setting: Any) -> bool:
    if setting == "auto":
        return sys.stdout.isatty()
    return bool(setting)


# ====================================================================================== the run
def build_source(cfg: DictConfig) -> Any:
    """The data source of ``cfg.data``, set up; `ConfigError` naming ``data`` otherwise."""
    from selectkit.data import DataSource

    source = instantiate_node(cfg.data, "data", drop=LOADER_KEYS)
    if not isinstance(source, DataSource):
        raise ConfigError(f"data._target_ must build a selectkit.data.DataSource, got {type(source).__name__}")
    source.setup()
    if len(source.train) == 0:
        raise ConfigError("data: the training set is empty; check data.* (e.g. data.imbalance, data.val_fraction)")
    return source


def build_module(cfg: DictConfig, meta: Mapping[str, Any]) -> Any:
    """The `TaskModule` of ``cfg.model``, ``cfg.task`` and ``cfg.optim`` for data described by ``meta``."""
    from selectkit.lightning import TaskModule
    from selectkit.models import ModelAdapter, make_model
    from selectkit.tasks import Task

    task = instantiate_node(cfg.task, "task")
    if not isinstance(task, Task):
        raise ConfigError(f"task._target_ must build a selectkit.tasks.Task, got {type(task).__name__}")
    task.setup(meta)
    factory = instantiate_node(cfg.model, "model", drop=MODEL_KEYS, partial=True)
    model = make_model(factory.func, meta["input_shape"], meta.get("num_classes"), **factory.keywords)
    adapter = ModelAdapter(model, embedding_layer=cfg.model.get("embedding_layer"), head_layer=cfg.model.get("head_layer"), num_classes=meta.get("num_classes"))
    task.check_model(adapter)
    o = cfg.optim
    optimizer = instantiate_node(o.optimizer, "optim.optimizer")
    scheduler = instantiate_node(o.scheduler, "optim.scheduler") if o.get("scheduler") is not None else None
    return TaskModule(model, task, adapter, optimizer, scheduler, scheduler_interval=o.get("interval", "step"))


def build_trainer(cfg: DictConfig, out_dir: Path, callbacks: list, logger: Any, **overrides: Any) -> Any:
    """The Lightning ``Trainer`` of ``cfg.trainer`` (samplers are selectkit's: no re-wrapping)."""
    import lightning.pytorch as pl

    tr = cfg.trainer
    settings = dict(
        max_epochs=tr.max_epochs,
        max_steps=tr.max_steps,
        accelerator=tr.accelerator,
        devices=tr.devices,
        num_nodes=tr.num_nodes,
        strategy=tr.strategy,
        precision=tr.precision,
        deterministic=tr.deterministic,
        gradient_clip_val=tr.gradient_clip_val,
        enable_progress_bar=_progress_bar(tr.progress_bar),
        log_every_n_steps=tr.log_every_n_steps,
        check_val_every_n_epoch=tr.get("check_val_every_n_epoch", 1),
        val_check_interval=tr.get("val_check_interval"),
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
        enable_model_summary=False,
        enable_checkpointing=bool(cfg.checkpoint),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
    )
    settings.update(overrides)
    return pl.Trainer(**settings)


def loader_settings(cfg: DictConfig) -> dict[str, Any]:
    """The `SelectionDataModule` keyword arguments of ``cfg.data`` and ``cfg.providers``."""
    d, prov = cfg.data, cfg.get("providers") or {}
    return dict(
        batch_size=d.batch_size,
        shuffle=d.get("shuffle", True),
        num_workers=d.num_workers,
        record_shards=bool(d.get("record_shards", False)),
        data_on_device=d.get("on_device", "auto"),
        score_batch_size=prov.get("batch_size", 1024),
        memory_cap_gb=prov.get("memory_cap_gb", 4.0),
        block_rows=(cfg.get("distributed") or {}).get("block_rows"),
    )


def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Check the config, train, and write the run's outputs into ``out_dir``; returns the summary."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from selectkit.allocator import retain_freed_memory
    from selectkit.lightning import RunRecorder, SelectionDataModule

    from selectkit.console import quiet_third_party

    quiet_third_party()
    out_dir = Path(out_dir)
    check_config(cfg)
    # the same steps page-fault their activations in again and again when glibc trims its heap
    retain_freed_memory(cfg.trainer.get("retain_freed_mb", 0))
    pipeline = build_pipeline(cfg)
    if cfg.get("rounds") is not None:
        from selectkit.rounds import run_rounds

        return run_rounds(cfg, out_dir, pipeline)
    run_name = str(cfg.run_name) if cfg.get("run_name") else pipeline.label
    source = build_source(cfg)
    meta = source.meta
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, meta)
    dm = SelectionDataModule(source, pipeline, out_dir=out_dir, **loader_settings(cfg))
    recorder = RunRecorder(out_dir, cfg.targets or [], dm, monitor=module.task.monitor)
    callbacks: list[pl.Callback] = [recorder]
    if cfg.checkpoint:
        # save_top_k=1 without a monitor keeps the newest epoch, rewritten as last.ckpt after every epoch
        callbacks.append(ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1, enable_version_counter=False))
    logger = _make_logger(cfg, out_dir, run_name)
    trainer = build_trainer(cfg, out_dir, callbacks, logger)
    trainer.fit(module, datamodule=dm, ckpt_path=str(cfg.resume) if cfg.get("resume") else None)

    if trainer.interrupted or trainer.state.status.value != "finished":
        raise SelectkitError("training did not finish; no summary.json was written")
    summary = {
        "status": "completed",
        "run_name": run_name,
        "selector": pipeline.label,
        "task": module.task.name,
        "seed": int(cfg.seed),
        "dataset": meta.get("name"),
        "train_size": len(source.train),
        "train_counts": meta.get("train_counts"),
        "selection_size": dm.controller.size(dm.controller.last_epoch),
        "synthetic": pipeline.num_synthetic,
        "world_size": trainer.world_size,
        "targets": [float(t) for t in (cfg.targets or [])],
        "select_s": dm.controller.select_s,
        "train_s": recorder.train_s,
        **recorder.summary(),
    }
    if trainer.is_global_zero:
        atomic_write_json(out_dir / "summary.json", summary)
        if logger is not None and cfg.logger.name == "wandb":
            _finish_wandb(logger, out_dir, summary, cfg.logger.get("log_manifest", True))
    return summary


def _finish_wandb(logger: Any, out_dir: Path, summary: Mapping[str, Any], log_manifest: bool) -> None:
    """Put the summary's figures in the W&B run's summary, log ``selections/`` as an artifact, finish.

    The artifact's files are the run directory's own (nothing is staged under the home directory).
    An offline run records them by their path relative to the run directory, so a copy of that
    directory syncs them: ``cd <run> && wandb sync wandb/offline-run-*``. An online run uploads them
    now, by their absolute path.
    """
    import wandb

    run = logger.experiment
    for key in ("best_val_acc", "select_s", "train_s"):
        if key in summary:
            run.summary[key] = summary[key]
    for target, hit in summary["time_to_target"].items():
        run.summary[f"time_to_{target}"] = hit["wall_s"] if hit else None
    folder = out_dir / "selections"
    if log_manifest and folder.is_dir():
        artifact = wandb.Artifact(f"selections-{run.id}", type="selection-manifest")
        artifact.add_dir(str(folder.resolve()), policy="immutable")
        if run.offline:
            for entry in artifact.manifest.entries.values():
                entry.local_path = os.path.relpath(entry.local_path, out_dir.resolve())
        run.log_artifact(artifact)
    wandb.finish()


@hydra.main(version_base="1.3", config_path="pkg://selectkit_conf", config_name="train")
def _app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from selectkit.console import RUN_LOG, say
    from selectkit.oracles import WAITING_EXIT, LabelsPending

    out_dir = HydraConfig.get().runtime.output_dir
    rank0 = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0) == 0
    if rank0:  # DDP's other ranks run this too, into the same train.log
        RUN_LOG.info("selectkit-train: start: outputs in %s; overrides: %s", out_dir, " ".join(HydraConfig.get().overrides.task) or "none")
    try:
        summary = run(cfg, out_dir)
    except LabelsPending as wait:
        # a round loop waiting for people's labels: a planned stop, said once, exit code 75
        if rank0:
            say(f"selectkit-train: {wait}")
            sys.exit(WAITING_EXIT)
        sys.exit(0)
    except SelectkitError as err:
        say(f"selectkit-train: error: {err}", error=True)
        sys.exit(2)
    except Exception:
        # the traceback goes to the console as before, and to the run's log
        RUN_LOG.exception("selectkit-train: error: the run failed")
        raise
    if summary.get("world_size", 1) == 1 or rank0:
        say(closing_line(summary, out_dir))
    best = summary.get(f"best_{summary.get('monitor', 'val_acc')}")
    return float(best) if best is not None else float("nan")


def closing_line(summary: Mapping[str, Any], out_dir: str | Path) -> str:
    """The run's last console line: what it reached, in how long, and where its outputs are."""
    monitor = summary.get("monitor", "val_acc")
    final = summary.get("final", {})
    reached = final.get(monitor)
    best = summary.get(f"best_{monitor}")
    parts = [f"{summary.get('selector', 'run')}"]
    if "rounds" in summary:
        # the last row is the training on the final labelled set, which acquires nothing
        parts.append(f"{max(len(summary['rounds']) - 1, 0)} rounds of acquisition, {summary.get('labels_used', 0)} labels")
    else:
        parts.append(f"{summary.get('epochs', 0)} epochs")
    if reached is not None:
        parts.append(f"final {monitor} {reached:.4f} (best {best:.4f})")
    parts.append(f"train {summary.get('train_s', 0.0):.1f} s + select {summary.get('select_s', 0.0):.1f} s")
    return f"selectkit-train: done: {', '.join(parts)}; outputs in {out_dir}"


def main() -> None:
    """Console entry point of ``selectkit-train``: bad settings stop here, in one line, exit code 2."""
    from selectkit.console import entry_point

    entry_point("selectkit-train", _app, "train")


if __name__ == "__main__":
    main()
