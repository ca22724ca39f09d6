"""``selectkit-train``: the Hydra application that trains a model on what a selection pipeline picks.

Every run writes, in Hydra's run directory: ``metrics.jsonl`` (one line per epoch),
``selections/epoch_NNNN.npz`` (the manifest), ``checkpoints/last.ckpt`` and, only when training
finished, ``summary.json``. Bad settings stop the run before training with a one-line error that
names the setting, and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig, OmegaConf

from selectkit.errors import ConfigError, SelectkitError

RESERVED_STAGE_KEYS = ("name", "schedule", "every")


# ====================================================================================== config checks
def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_config(cfg: DictConfig) -> None:
    """Type and range checks of the run-level settings; `ConfigError` names the first bad one."""
    _require(_is_int(cfg.seed), "seed", "an integer", cfg.seed)
    targets = cfg.get("targets") or []
    for i, t in enumerate(targets):
        _require(_is_num(t) and 0 < t <= 1, f"targets.{i}", "a number in (0, 1]", t)
    tr = cfg.trainer
    _require(_is_int(tr.max_epochs) and tr.max_epochs >= 1, "trainer.max_epochs", "an integer >= 1", tr.max_epochs)
    _require(_is_int(tr.max_steps) and (tr.max_steps == -1 or tr.max_steps >= 1), "trainer.max_steps", "-1 or an integer >= 1", tr.max_steps)
    _require(_is_int(tr.devices) and tr.devices >= 1, "trainer.devices", "an integer >= 1", tr.devices)
    _require(tr.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "trainer.accelerator", "one of auto, cpu, gpu", tr.accelerator)
    d = cfg.data
    _require(_is_int(d.batch_size) and d.batch_size >= 1, "data.batch_size", "an integer >= 1", d.batch_size)
    _require(_is_int(d.num_workers) and d.num_workers >= 0, "data.num_workers", "an integer >= 0", d.num_workers)
    _require(_is_num(d.val_fraction) and 0 <= d.val_fraction < 1, "data.val_fraction", "a number in [0, 1)", d.val_fraction)
    o = cfg.optim
    _require(_is_num(o.lr) and o.lr > 0, "optim.lr", "a number > 0", o.lr)
    _require(cfg.logger.name in ("wandb", "csv", "none"), "logger.name", "one of wandb, csv, none", cfg.logger.name)
    if cfg.get("resume"):
        _require(Path(str(cfg.resume)).is_file(), "resume", "the path of an existing checkpoint file", cfg.resume)


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
    stages = []
    for label, node, path in items:
        spec = OmegaConf.to_container(node, resolve=True)
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{path}.name must name a selector")
        params = {k: v for k, v in spec.items() if k not in RESERVED_STAGE_KEYS}
        selector = registry.create(spec["name"], config_path=path, **params)
        stage = Stage(selector, schedule=spec.get("schedule", "epoch"), every=spec.get("every", 1), name=label)
        stage.check(path)
        stages.append(stage)
    shared = _neighbors_settings(cfg)
    if shared is not None:
        for stage in stages:
            if "neighbors" in stage.selector.get_params() and stage.selector.neighbors is None:
                stage.selector.neighbors = dict(shared)
    pipeline = Pipeline(stages, seed=cfg.seed)
    pipeline.check()
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
    return WandbLogger(
        project=cfg.logger.project,
        name=run_name,
        save_dir=str(out_dir),
        mode=mode,
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def _progress_bar(setting: Any) -> bool:
    if setting == "auto":
        return sys.stdout.isatty()
    return bool(setting)


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


# ====================================================================================== the run
def run(cfg: DictConfig, out_dir: str | Path) -> dict[str, Any]:
    """Check the config, train, and write the run's outputs into ``out_dir``; returns the summary."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from selectkit.data import build_datasets
    from selectkit.lightning import RunRecorder, SelectionDataModule, SelectionModule
    from selectkit.models import build_model

    out_dir = Path(out_dir)
    check_config(cfg)
    pipeline = build_pipeline(cfg)
    run_name = str(cfg.run_name) if cfg.get("run_name") else pipeline.label
    d = cfg.data
    imbalance = OmegaConf.to_container(d.imbalance, resolve=True) if d.get("imbalance") is not None else None
    train_ds, val_ds, meta = build_datasets(
        name=d.name,
        data_dir=d.data_dir,
        val_fraction=d.val_fraction,
        seed=cfg.seed,
        normalize=d.normalize,
        imbalance=imbalance,
    )
    if len(train_ds) == 0:
        raise ConfigError("data: the training set is empty; check data.name, data.imbalance and data.val_fraction")

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model_kwargs = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    model = build_model(cfg.model.name, meta["input_shape"], meta["num_classes"], **model_kwargs)
    o = cfg.optim
    module = SelectionModule(
        model,
        num_classes=meta["num_classes"],
        optimizer=o.name,
        lr=o.lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        scheduler=o.scheduler,
        warmup_fraction=o.warmup_fraction,
    )
    dm = SelectionDataModule(
        lambda: (train_ds, val_ds, meta),
        pipeline,
        batch_size=d.batch_size,
        out_dir=out_dir,
        shuffle=d.shuffle,
        num_workers=d.num_workers,
        record_shards=bool(d.get("record_shards", False)),
    )
    recorder = RunRecorder(out_dir, cfg.targets or [], lambda: dm.controller)
    callbacks: list[pl.Callback] = [recorder]
    if cfg.checkpoint:
        # save_top_k=1 without a monitor keeps the newest epoch, rewritten as last.ckpt after every epoch
        callbacks.append(ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1, enable_version_counter=False))
    logger = _make_logger(cfg, out_dir, run_name)
    tr = cfg.trainer
    trainer = pl.Trainer(
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
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
        enable_model_summary=False,
        enable_checkpointing=bool(cfg.checkpoint),
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(cfg.resume) if cfg.get("resume") else None)

    if trainer.interrupted or trainer.state.status.value != "finished":
        raise SelectkitError("training did not finish; no summary.json was written")
    summary = {
        "status": "completed",
        "run_name": run_name,
        "selector": pipeline.label,
        "seed": int(cfg.seed),
        "dataset": meta.get("name", d.name),
        "train_size": len(train_ds),
        "train_counts": meta.get("train_counts"),
        "selection_size": dm.controller.expected_size(),
        "synthetic": pipeline.num_synthetic,
        "world_size": trainer.world_size,
        "targets": [float(t) for t in (cfg.targets or [])],
        "select_s": dm.controller.select_s,
        "train_s": recorder.train_s,
        **recorder.summary(),
    }
    if trainer.is_global_zero:
        _write_json(out_dir / "summary.json", summary)
        if logger is not None and cfg.logger.name == "wandb":
            _finish_wandb(logger, out_dir, summary, cfg.logger.get("log_manifest", True))
    return summary


def _finish_wandb(logger: Any, out_dir: Path, summary: Mapping[str, Any], log_manifest: bool) -> None:
    import wandb

    run = logger.experiment
    for key in ("best_val_acc", "select_s", "train_s"):
        run.summary[key] = summary[key]
    for target, hit in summary["time_to_target"].items():
        run.summary[f"time_to_{target}"] = hit["wall_s"] if hit else None
    if log_manifest and (out_dir / "selections").is_dir():
        artifact = wandb.Artifact(f"selections-{run.id}", type="selection-manifest")
        artifact.add_dir(str(out_dir / "selections"))
        run.log_artifact(artifact)
    wandb.finish()


@hydra.main(version_base="1.3", config_path="pkg://selectkit_conf", config_name="train")
def _app(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    try:
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    except SelectkitError as err:
        print(f"selectkit-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    best = summary.get("best_val_acc")
    return float(best) if best is not None else float("nan")


def _check_selector_choice(argv: list[str]) -> None:
    """Refuse ``selector=<unknown>`` with one line listing the installed selectors (before Hydra runs)."""
    from selectkit import registry

    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+~") != "selector":
            continue
        for name in value.split(","):
            name = name.strip()
            if name and name != "null" and name not in registry.available():
                raise ConfigError(f"unknown selector {name!r} in selector={value}; installed selectors: {', '.join(registry.available())}")


def main() -> None:
    """Console entry point of ``selectkit-train``."""
    try:
        _check_selector_choice(sys.argv[1:])
    except ConfigError as err:
        print(f"selectkit-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    _app()


if __name__ == "__main__":
    main()
