"""PyTorch Lightning glue: the training module, the data module that owns selection, the run recorder.

* `TaskModule` trains any ``nn.Module`` on any `selectkit.tasks.Task`: the task gives each batch's loss
  terms, plugins' `selectkit.hooks.TrainingHook` s add theirs, and `selectkit.tasks.combine` weighs and
  normalises them (``task.weight_norm``). Optimizer and scheduler are factories (Hydra ``_partial_``
  targets); the scheduler is sized on the steps actually taken (``trainer.estimated_stepping_batches``).
* `SelectionDataModule` holds the data source and the `SelectionController`; its training loader uses a
  `SelectionSampler` (or a `TupleBatchSampler` for tuples), set by Lightning each epoch, and gathers
  whole batches with one call. It is built once, and again only when the training set changes (it
  grows, or a stage re-makes its synthetic samples). Model outputs that stages ask for are computed by
  a `selectkit.providers.PoolScorer`. Its ``state_dict`` carries the selection state into checkpoints.
* `RunRecorder` measures training and selection wall-clock time, counts examples seen, writes
  ``metrics.jsonl`` every epoch and keeps time-to-target, all restored on resume.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from selectkit.control import SelectionController
from selectkit.data import Batches, batch_collate
from selectkit.errors import ConfigError
from selectkit.io import atomic_write_jsonl
from selectkit.pipeline import Pipeline
from selectkit.distributed import Comm
from selectkit.providers import PoolScorer, model_providers
from selectkit.sampler import SelectionSampler, ShardSampler, TupleBatchSampler
from selectkit.selection import Tuples
from selectkit.tasks import combine

#: scheduler arguments the module fills from the run's step count when the factory takes them
_STEP_ARGUMENTS = ("total_steps", "T_max", "num_training_steps", "total_iters")
#: salt of the per-epoch seed of training's own randomness (dropout, augmentation)
_EPOCH_SEED = 0x45504F


# ====================================================================================== the model
class TaskModule(pl.LightningModule):
    """Trains ``model`` on ``task`` with per-sample weights, padding masks and plugin hooks.

    Args:
        model: any ``nn.Module``.
        task: a `selectkit.tasks.Task` (already `setup` with the data's meta).
        adapter: the `selectkit.models.ModelAdapter` of ``model`` (embeddings, classifier head).
        optimizer: ``params -> torch.optim.Optimizer`` (a ``_partial_`` target).
        scheduler: ``optimizer -> LR scheduler`` or None; arguments named like a step count
            (``total_steps``, ``T_max``, ...) that the factory leaves open are filled with the run's steps.
        scheduler_interval: ``step`` | ``epoch``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        task: Any,
        adapter: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
    ) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.adapter = adapter
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.hooks: list[Any] = []
        self.examples_in_epoch = 0
        self.last_val: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        for hook in self.hooks:
            batch = hook.prepare_batch(self, batch, batch_idx)
        terms = list(self.task.loss_terms(self, batch))
        for hook in self.hooks:
            terms += hook.loss_terms(self, batch)
        loss, live = combine(terms, self.task.weight_norm)
        self.examples_in_epoch += live
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=max(live, 1))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.task.validation_start(self)

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        self.task.validation_step(self, batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self.task.validation_end(self)
        self.last_val = dict(metrics)
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self.log(key, float(value), rank_zero_only=False, sync_dist=False)
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
                # one scalar per entry (val_class_recall/3), as experiment loggers plot them
                for i, v in enumerate(value):
                    self.log(f"{key}/{i}", float(v), rank_zero_only=False, sync_dist=False)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = self.optimizer_factory(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ConfigError(f"optim.optimizer must build a torch.optim.Optimizer, got {type(opt).__name__}")
        if self.scheduler_factory is None:
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        if self.scheduler_interval == "epoch":
            steps = int(self.trainer.max_epochs)
        fill = _open_step_arguments(self.scheduler_factory)
        # OneCycleLR is stepped after every optimizer step, the last included: steps + 1 positions
        sched = self.scheduler_factory(opt, **{k: (steps + 1 if k == "total_steps" else max(steps, 1)) for k in fill})
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.scheduler_interval}}


    def lr_scheduler_step(self, scheduler: Any, metric: Any = None) -> None:
        """Step the schedule, holding its last value past a fixed horizon.

        The horizon is sized on ``trainer.estimated_stepping_batches``, i.e. on the first epoch's
        selection; when later selections are larger, a horizon-bound schedule (one-cycle) stays at its
        final learning rate instead of failing.
        """
        total = getattr(scheduler, "total_steps", None)
        if total is not None and scheduler.last_epoch >= total - 1:
            return
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)


def _open_step_arguments(factory: Any) -> list[str]:
    """Step-count arguments of a scheduler factory that its partial leaves unset."""
    func = getattr(factory, "func", factory)
    given = set(getattr(factory, "keywords", {}) or {})
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return []
    return [k for k in _STEP_ARGUMENTS if k in params and k not in given]


# ====================================================================================== the data
class SelectionDataModule(pl.LightningDataModule):
    """The data source plus the selection controller feeding the training loader.

    Args:
        source: a `selectkit.data.DataSource` (set up here if it was not).
        pipeline: the selection pipeline.
        batch_size: per-rank batch size.
        out_dir: run directory for the selection manifest (rank 0 writes).
        shuffle: shuffle each epoch's selection (from seed and epoch).
        num_workers: loader workers; 0 gathers in the main process (fastest for in-memory data).
        score_batch_size: batch size of the passes that compute model outputs for selectors.
        memory_cap_gb: largest model output a provider may allocate (``providers.memory_cap_gb``).
        block_rows: rows per logical block of the pools' shards over the DDP ranks (``distributed.block_rows``).
        record_shards: write every rank's shard of every epoch to ``<out_dir>/shards`` (audits).
        data_on_device: ``auto`` moves in-memory data to the accelerator once when it fits in half its
            free memory (batches are then gathered there); ``true`` always, ``false`` never.
        base_ids: the ids the pipeline selects from (a round loop passes the labelled ids).
        labels: labels overriding the data's own (``-1`` = unlabelled; a round loop's revealed labels).
        round: the round loop's round (0 outside one).
    """

    def __init__(
        self,
        source: Any,
        pipeline: Pipeline,
        *,
        batch_size: int = 128,
        out_dir: str | Path | None = None,
        shuffle: bool = True,
        num_workers: int = 0,
        score_batch_size: int = 1024,
        memory_cap_gb: float = 4.0,
        block_rows: int | None = None,
        record_shards: bool = False,
        data_on_device: Any = "auto",
        base_ids: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        round: int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.out_dir = out_dir
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.score_batch_size = score_batch_size
        self.memory_cap_gb = memory_cap_gb
        self.block_rows = block_rows
        self.record_shards = record_shards
        self.data_on_device = data_on_device
        self.base_ids = base_ids
        self.label_override = labels
        self.round = round
        self.train_ds = self.val_ds = None
        self.meta: dict[str, Any] = {}
        self.controller: SelectionController | None = None
        self.scorer: PoolScorer | None = None
        self._pending_state: Mapping[str, Any] | None = None
        self._train_loader: DataLoader | None = None
        self._loader_key: tuple[int, int] | None = None
        self._sampler: Any = None
        self._model_checked = False

    def setup(self, stage: str | None = None) -> None:
        if self.train_ds is None:
            self.source.setup()
            self.train_ds, self.val_ds, self.meta = self.source.train, self.source.val, self.source.meta
            self._place_on_device()
        if self.controller is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            labels = self.label_override if self.label_override is not None else self.train_ds.labels()
            pairs = self.train_ds.pairs() if callable(getattr(self.train_ds, "pairs", None)) else None
            self.controller = SelectionController(
                self.pipeline, labels, self.train_ds.features, out_dir=self.out_dir, rank=rank, base_ids=self.base_ids, rows=len(self.train_ds), pairs=pairs,
                comm=Comm(), memory_cap_gb=self.memory_cap_gb, block_rows=self.block_rows,
            )
            self.controller.round = self.round
            if self._pending_state is not None:
                self.controller.load_state_dict(self._pending_state)
                self._pending_state = None
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None and not self._model_checked:
            check_setup(module, self.train_ds, self.pipeline, self.base_ids)
            self._model_checked = True
        if self.pipeline.changes_training_set and self.trainer is not None and not self.trainer.reload_dataloaders_every_n_epochs:
            # a stage makes samples after the first epoch: Lightning asks for the training loader at every
            # epoch, and `train_dataloader` hands back the same loader unless the training set changed
            self.trainer.reload_dataloaders_every_n_epochs = 1

    def _place_on_device(self) -> None:
        # setup runs before the strategy moves the model, so the target is the strategy's device
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if device.type == "cpu" or self.data_on_device is False or self.num_workers > 0:
            return
        need = sum(ds.nbytes() or 0 for ds in (self.train_ds, self.val_ds) if ds is not None)
        if self.data_on_device == "auto":
            free, _ = torch.cuda.mem_get_info(device) if device.type == "cuda" else (0, 0)
            if any(ds is not None and ds.nbytes() is None for ds in (self.train_ds, self.val_ds)) or need > free // 2:
                return
        self.train_ds = self.train_ds.to(device)
        if self.val_ds is not None:
            self.val_ds = self.val_ds.to(device)

    def _attach_model(self) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None:
            return
        wanted = self.pipeline.requirements() - {"labels", "features", "pairs"}
        if not wanted:
            return
        self.scorer = PoolScorer(module.adapter, self.train_ds, batch_size=self.score_batch_size, device=module.device, memory_cap_gb=self.memory_cap_gb, seed=self.pipeline.seed)
        self.scorer.round = self.round
        scorer = self.scorer
        self.controller.on_epoch = [lambda epoch: setattr(scorer, "epoch", epoch)]
        offered = model_providers(self.scorer, module.task)
        missing = sorted(wanted - set(offered))
        if missing:
            raise ConfigError(f"pipeline: a stage needs {missing[0]!r}, which task={module.task.name} cannot provide; it offers {', '.join(sorted(offered))}")
        self.controller.model_outputs = offered

    def train_dataloader(self) -> DataLoader:
        self._attach_model()
        # stages that create samples run before the training set is built: before the first epoch, and
        # at the start of each later epoch when one of them starts late or refreshes. (A resumed run's
        # first call comes before Lightning restores its epoch: the restored selection is used then.)
        if not self.pipeline.started:
            self.controller.output(self._next_epoch())
        elif self.pipeline.changes_training_set and self._next_epoch() > self.controller.last_epoch:
            self.controller.output(self._next_epoch())
        key = (len(self.train_ds) + self.pipeline.num_synthetic, self.pipeline.training_set_version)
        if self._train_loader is not None and key == self._loader_key:
            # Lightning sizes the loader before it sets the new epoch: size it by the selection just made
            self._sampler.epoch = self.controller.last_epoch
            return self._train_loader
        hooks = self.pipeline.hooks(len(self.train_ds))
        dataset = self._training_set(hooks)
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is not None:
            module.hooks = hooks
        record = str(Path(self.out_dir) / "shards") if self.record_shards and self.out_dir is not None else None
        if self.pipeline.returns is Tuples:
            self._sampler = TupleBatchSampler(self.controller, self.batch_size, shuffle=self.shuffle, record_dir=record)
            self._sampler.epoch = self.controller.last_epoch
            if module is not None:
                module.task.bind_tuples(self._sampler)
            loader = self._loader(dataset, batch_sampler=self._sampler)
        else:
            self._sampler = SelectionSampler(self.controller, shuffle=self.shuffle, record_dir=record)
            self._sampler.epoch = self.controller.last_epoch
            loader = self._loader(dataset, sampler=self._sampler, batch_size=self.batch_size)
        self._train_loader, self._loader_key = loader, key
        return loader

    def _next_epoch(self) -> int:
        """The epoch the training loop is about to run (the loops' progress counter, restored on resume)."""
        if self.trainer is None:
            return 0
        return int(self.trainer.fit_loop.epoch_progress.current.processed)

    def epoch_length(self) -> int:
        """Batches this rank runs in the current epoch (selections may change size between epochs)."""
        return len(self._sampler) if isinstance(self._sampler, TupleBatchSampler) else math.ceil(len(self._sampler) / self.batch_size)

    def _training_set(self, hooks: Sequence[Any]) -> Any:
        """The training rows with the synthetic samples appended and every hook's wrapping applied
        (built by `train_dataloader` only when the set changed, `Pipeline.training_set_version`)."""
        dataset = self.train_ds
        made = [s for _, s, _ in self.pipeline.synthetic]
        if made:
            spaces = {s.space for s in made}
            hooked = {s.space for hook in hooks for s, _, _ in hook.blocks}
            if spaces - hooked - {"input"}:
                raise ConfigError(f"pipeline: synthetic samples in space {sorted(spaces - hooked - {'input'})[0]!r} need a training hook from the stage that made them")
            plain = [s for s in made if s.space == "input"]
            if plain:
                if len(plain) != len(made):
                    raise ConfigError("pipeline: stages mix input-space and other synthetic samples; use one space")
                shape = tuple(self.train_ds.input_shape)
                feats = np.concatenate([s.features for s in plain]).reshape(-1, *shape)
                dataset = dataset.with_synthetic(torch.as_tensor(feats, dtype=torch.float32), torch.as_tensor(self.controller.synthetic_labels()))
        for hook in hooks:
            dataset = hook.wrap_dataset(dataset)
        return Batches(dataset)

    def val_dataloader(self) -> DataLoader:
        if self.val_ds is None:
            return []
        return self._loader(Batches(self.val_ds), sampler=ShardSampler(len(self.val_ds)), batch_size=max(self.batch_size, 512))

    def _loader(self, dataset: Any, *, sampler: Any = None, batch_sampler: Any = None, batch_size: int | None = None) -> DataLoader:
        on_device = self.train_ds is not None and getattr(self.train_ds, "device", torch.device("cpu")) != torch.device("cpu")
        workers = 0 if on_device else self.num_workers
        # the loader's own generator: its iterators then never draw from torch's global one (which
        # dropout uses, reseeded every epoch), however often and whenever Lightning creates them
        generator = torch.Generator().manual_seed(int(self.pipeline.seed))
        kwargs: dict[str, Any] = {"collate_fn": batch_collate, "num_workers": workers, "persistent_workers": workers > 0, "generator": generator}
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {"controller": to_checkpoint(self.controller.state_dict())} if self.controller is not None else {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if "controller" not in state_dict:
            return
        state = from_checkpoint(state_dict["controller"])
        if self.controller is None:
            self._pending_state = state
        else:
            self.controller.load_state_dict(state)


#: training rows the set-up checks run the model on
CHECK_ROWS = 8


def check_setup(module: Any, dataset: Any, pipeline: Pipeline, ids: np.ndarray | None = None) -> None:
    """What the run needs from its model, checked before the first epoch on a few real training rows
    (``ids``, else the first rows): the task's check of the model's outputs (`Task.check_batch`),
    every model output a stage asks for (``requires``), and every stage's own check
    (`selectkit.Selector.check_model`); all in eval mode without gradients. A refusal is the one-line
    `ConfigError` of the check that failed, naming the setting; nothing has been trained or written."""
    from selectkit.models import probing
    from selectkit.providers import embed_batch

    adapter = getattr(module, "adapter", None)
    rows = np.asarray(ids if ids is not None else np.arange(min(len(dataset), CHECK_ROWS)), dtype=np.int64)[:CHECK_ROWS]
    if adapter is None or rows.size == 0:
        return
    device = next(adapter.model.parameters(), torch.empty(0)).device
    batch = {k: v.to(device) for k, v in dataset.gather(torch.from_numpy(rows)).items()}
    outputs = {"embeddings": embed_batch, **module.task.outputs()}
    with probing(adapter.model):
        module.task.check_batch(adapter, batch)
        for stage in pipeline.stages:
            for name, params in stage.selector.requirements().items():
                if name in outputs:
                    outputs[name](adapter, batch, **params)
            stage.selector.check_model(adapter, batch)


def to_checkpoint(obj: Any) -> Any:
    """Numpy arrays and scalars as tensors and Python numbers, so ``torch.load(weights_only=True)`` reads them."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "USO":
            return obj.tolist()
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: to_checkpoint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_checkpoint(v) for v in obj)
    return obj


def from_checkpoint(obj: Any) -> Any:
    """The inverse of `to_checkpoint`: tensors back to numpy arrays."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, Mapping):
        return {k: from_checkpoint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_checkpoint(v) for v in obj)
    return obj


# ====================================================================================== the books
def _log_epoch(row: Mapping[str, Any]) -> None:
    """One line of the run's log (`selectkit.console.RUN_LOG`) for an epoch's ``metrics.jsonl`` row."""
    from selectkit.console import RUN_LOG

    scores = [f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_") and isinstance(v, float)]
    RUN_LOG.info("epoch %d: %s%s examples seen, train %.1f s + select %.1f s", row["epoch"], ", ".join(scores) + ", " if scores else "",
                 f"{row['examples_seen']:,}", row["train_s"], row["select_s"])


class RunRecorder(pl.Callback):
    """Per-epoch metrics, wall-clock accounting and time-to-target.

    ``train_s`` counts training epochs only (validation and selection excluded); ``select_s`` is the
    controller's selection time. ``wall_s`` of a target is ``train_s + select_s`` when it was reached.
    Each training hook's `selectkit.hooks.TrainingHook.epoch_summary` goes in the epoch's row under
    ``hooks.<stage>``.
    At each epoch start it also tells Lightning how many batches this epoch's selection makes, and
    reseeds torch's generator from (seed, round, epoch): training's own randomness (dropout) then
    does not depend on what ran before, so a run resumed at an epoch boundary trains as the
    uninterrupted one did, and so do the selections made from its model.

    Args:
        out_dir: run directory; rank 0 writes ``metrics.jsonl`` there.
        targets: values of ``monitor`` whose time-to-reach is tracked.
        datamodule: the `SelectionDataModule` (its controller is created late, in ``setup``).
        monitor: the validation metric targets refer to (the task's, e.g. ``val_acc``).
    """

    state_key_name = "selectkit_run_recorder"

    def __init__(self, out_dir: str | Path | None, targets: Sequence[float], datamodule: SelectionDataModule, monitor: str = "val_acc") -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.targets = sorted(float(t) for t in targets)
        self.datamodule = datamodule
        self.monitor = monitor
        self.train_s = 0.0
        self.examples_seen = 0
        self.rows: list[dict[str, Any]] = []
        self.time_to_target: dict[str, dict[str, Any] | None] = {f"{t:g}": None for t in self.targets}
        self._t0 = 0.0
        self._val_s = 0.0
        self._v0 = 0.0
        self._validated = False

    @property
    def state_key(self) -> str:
        return self.state_key_name

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        length = self.datamodule.epoch_length()
        limit = trainer.limit_train_batches
        if isinstance(limit, float):
            length = int(length * limit)
        elif isinstance(limit, int):
            length = min(length, limit)
        # Lightning sizes an epoch once, from the first loader length; selections may change size, so
        # the epoch's batch count (and the combined loader's per-loader limit) follow this epoch's
        trainer.fit_loop.max_batches = length
        combined = getattr(trainer.fit_loop, "_combined_loader", None)
        if combined is not None and len(combined.flattened) == 1:
            combined.limits = [length]
        dm = self.datamodule
        torch.manual_seed(int(np.random.default_rng([dm.pipeline.seed, dm.round, trainer.current_epoch, _EPOCH_SEED]).integers(2**62)))
        pl_module.examples_in_epoch = 0
        self._val_s = 0.0
        self._validated = False
        self._t0 = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._v0 = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_s += time.perf_counter() - self._v0
        self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_s += time.perf_counter() - self._t0 - self._val_s
        seen = torch.tensor(float(pl_module.examples_in_epoch), device=pl_module.device)
        self.examples_seen += int(trainer.strategy.reduce(seen, reduce_op="sum").item())
        controller = self.datamodule.controller
        row: dict[str, Any] = {
            "epoch": int(trainer.current_epoch),
            "examples_seen": self.examples_seen,
            "train_s": round(self.train_s, 4),
            "select_s": round(controller.select_s if controller else 0.0, 4),
        }
        hooked: dict[str, Any] = {}
        for hook in getattr(pl_module, "hooks", []):
            summary = hook.epoch_summary(pl_module)
            if summary:
                hooked[hook.stage] = summary
        if hooked:
            row["hooks"] = hooked
        if self._validated:
            for key, value in pl_module.last_val.items():
                row[key] = float(value) if isinstance(value, (int, float)) else value
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = float(opt.param_groups[0]["lr"])
        self.rows.append(row)
        wall = row["train_s"] + row["select_s"]
        for t in self.targets:
            key = f"{t:g}"
            if self.time_to_target[key] is None and row.get(self.monitor, -math.inf) >= t:
                self.time_to_target[key] = {"epoch": row["epoch"], "wall_s": round(wall, 4), "examples_seen": row["examples_seen"]}
        if pl_module.logger is not None:
            pl_module.log("time/train_s", float(row["train_s"]), rank_zero_only=True)
            pl_module.log("time/select_s", float(row["select_s"]), rank_zero_only=True)
            pl_module.log("examples_seen", float(row["examples_seen"]), rank_zero_only=True)
            if "lr" in row:
                pl_module.log("lr", row["lr"], rank_zero_only=True)
        if trainer.is_global_zero:
            _log_epoch(row)
        if trainer.is_global_zero and self.out_dir is not None:
            self.write_metrics()

    def write_metrics(self) -> None:
        """Rewrite ``metrics.jsonl`` from the rows held (so a resumed run carries the earlier epochs)."""
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_jsonl(self.out_dir / "metrics.jsonl", self.rows)

    def state_dict(self) -> dict[str, Any]:
        return {"train_s": self.train_s, "examples_seen": self.examples_seen, "rows": self.rows, "time_to_target": self.time_to_target}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.train_s = float(state_dict["train_s"])
        self.examples_seen = int(state_dict["examples_seen"])
        self.rows = [dict(r) for r in state_dict["rows"]]
        saved = dict(state_dict.get("time_to_target", {}))
        self.time_to_target = {k: saved.get(k) for k in self.time_to_target}

    def summary(self) -> dict[str, Any]:
        """Final metrics, best value of ``monitor`` and time-to-target, for ``summary.json``."""
        # the last validated epoch (a run stopped by max_steps may end in an epoch without validation)
        validated = [r for r in self.rows if self.monitor in r]
        final = dict(validated[-1] if validated else (self.rows[-1] if self.rows else {}))
        if self.rows and final and final.get("epoch") != self.rows[-1].get("epoch"):
            final["examples_seen"], final["train_s"], final["select_s"] = (self.rows[-1][k] for k in ("examples_seen", "train_s", "select_s"))
            final["validated_epoch"] = final["epoch"]
            final["epoch"] = self.rows[-1]["epoch"]
        values = [r[self.monitor] for r in self.rows if isinstance(r.get(self.monitor), (int, float))]
        best = max(values) if values else None
        return {"final": final, "best_val_acc" if self.monitor == "val_acc" else f"best_{self.monitor}": best, "monitor": self.monitor, "time_to_target": self.time_to_target, "epochs": len(self.rows)}
