"""PyTorch Lightning glue: the training module, the data module that owns selection, the run recorder.

* `SelectionModule` trains any ``nn.Module`` classifier with a per-sample weighted loss (selection
  weights reach the loss) and a learning-rate schedule sized on the steps actually taken.
* `SelectionDataModule` holds the in-memory datasets and the `SelectionController`; its loader uses a
  `SelectionSampler` (set by Lightning each epoch) and gathers whole batches with one indexing operation.
  Its ``state_dict`` carries the selection state into checkpoints.
* `RunRecorder` measures training and selection wall-clock time, counts examples seen, writes
  ``metrics.jsonl`` every epoch and keeps time-to-target-accuracy, all restored on resume.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from selectkit.control import SelectionController, model_embedder
from selectkit.errors import ConfigError
from selectkit.pipeline import Pipeline
from selectkit.sampler import SelectionSampler


# ====================================================================================== the model
class SelectionModule(pl.LightningModule):
    """Classifier training with per-sample weights.

    Args:
        model: an ``nn.Module`` with ``forward(x) -> logits`` (and ``embed`` for embedding selectors).
        num_classes: number of classes (for per-class validation metrics).
        optimizer: ``sgd`` | ``adamw`` | ``adam``.
        lr, momentum, weight_decay: optimizer settings.
        scheduler: ``none`` | ``cosine`` | ``onecycle``, sized on ``trainer.estimated_stepping_batches``.
        warmup_fraction: share of steps used for warm-up by ``onecycle``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        num_classes: int,
        optimizer: str = "sgd",
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        scheduler: str = "onecycle",
        warmup_fraction: float = 0.15,
    ) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.optimizer_name = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.scheduler_name = scheduler
        self.warmup_fraction = warmup_fraction
        self.examples_in_epoch = 0
        self._val: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["x"])
        per_sample = F.cross_entropy(logits, batch["y"], reduction="none")
        weight = batch["weight"].to(per_sample.dtype)
        if "syn_lam" in batch and batch["syn_lam"].numel():
            e0, e1 = self.model.embed(batch["syn_x0"]), self.model.embed(batch["syn_x1"])
            lam = batch["syn_lam"].to(e0.dtype).unsqueeze(1)
            syn_logits = self.model.head(e0 + lam * (e1 - e0))
            per_sample = torch.cat([per_sample, F.cross_entropy(syn_logits, batch["syn_y"], reduction="none")])
            weight = torch.cat([weight, batch["syn_weight"].to(weight.dtype)])
        live = int((weight > 0).sum())
        self.examples_in_epoch += live
        loss = (per_sample * weight).sum() / max(live, 1)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=max(live, 1))
        return loss

    def on_validation_epoch_start(self) -> None:
        k = self.num_classes
        self._val = {
            "loss": torch.zeros((), device=self.device, dtype=torch.float64),
            "correct": torch.zeros(k, device=self.device, dtype=torch.float64),
            "count": torch.zeros(k, device=self.device, dtype=torch.float64),
        }

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        logits = self.model(batch["x"])
        y = batch["y"]
        self._val["loss"] += F.cross_entropy(logits, y, reduction="sum").double()
        hit = (logits.argmax(dim=1) == y).double()
        self._val["correct"].index_add_(0, y, hit)
        self._val["count"].index_add_(0, y, torch.ones_like(hit))

    def on_validation_epoch_end(self) -> None:
        stats = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._val.items()}
        total = stats["count"].sum().clamp_min(1)
        recall = stats["correct"] / stats["count"].clamp_min(1)
        present = stats["count"] > 0
        self.log("val_acc", (stats["correct"].sum() / total).float())
        self.log("val_loss", (stats["loss"] / total).float())
        self.log("val_balanced_acc", recall[present].mean().float())
        self.val_class_recall = recall.float().cpu().numpy()

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.momentum > 0)
        elif self.optimizer_name == "adamw":
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        elif self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            raise ConfigError(f"optim.name must be one of sgd, adamw, adam, got {self.optimizer_name!r}")
        if self.scheduler_name == "none":
            return opt
        steps = int(self.trainer.estimated_stepping_batches)
        if self.scheduler_name == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        elif self.scheduler_name == "onecycle":
            # stepped after every optimizer step, the last one included: steps + 1 positions
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps + 1, pct_start=self.warmup_fraction)
        else:
            raise ConfigError(f"optim.scheduler must be one of none, cosine, onecycle, got {self.scheduler_name!r}")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ====================================================================================== the data
class SelectionDataModule(pl.LightningDataModule):
    """In-memory train/val datasets plus the selection controller feeding the training loader.

    Args:
        datasets: a callable returning ``(train_ds, val_ds, meta)``; called once in ``setup``.
        pipeline: the selection pipeline.
        batch_size: per-rank batch size.
        out_dir: run directory for the selection manifest (rank 0 writes).
        shuffle: shuffle each epoch's selection (from seed and epoch).
        num_workers: loader workers; 0 keeps gathering in the main process, which is fastest in memory.
        embed_batch_size: batch size of the embedding pass for selectors that need embeddings.
        record_shards: write every rank's shard of every epoch to ``<out_dir>/shards`` (audits).
    """

    def __init__(
        self,
        datasets: Callable[[], tuple[Any, Any, dict]],
        pipeline: Pipeline,
        *,
        batch_size: int = 128,
        out_dir: str | Path | None = None,
        shuffle: bool = True,
        num_workers: int = 0,
        embed_batch_size: int = 1024,
        record_shards: bool = False,
    ) -> None:
        super().__init__()
        self._datasets = datasets
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.out_dir = out_dir
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.embed_batch_size = embed_batch_size
        self.record_shards = record_shards
        self.train_ds = self.val_ds = None
        self.meta: dict[str, Any] = {}
        self.controller: SelectionController | None = None
        self._pending_state: Mapping[str, Any] | None = None
        self._train_with_synthetic = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_ds is None:
            self.train_ds, self.val_ds, self.meta = self._datasets()
        if self.controller is None:
            rank = self.trainer.global_rank if self.trainer is not None else 0
            train = self.train_ds
            self.controller = SelectionController(
                self.pipeline,
                labels=train.y.numpy(),
                features=lambda ids: train.x[torch.as_tensor(ids)].reshape(len(ids), -1).numpy(),
                out_dir=self.out_dir,
                rank=rank,
            )
            if self._pending_state is not None:
                self.controller.load_state_dict(self._pending_state)
                self._pending_state = None

    def _attach_model(self) -> None:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or not hasattr(module.model, "embed"):
            return
        train = self.train_ds
        self.controller.embedder = model_embedder(
            module.model,
            lambda ids: train.x[torch.as_tensor(ids)],
            batch_size=self.embed_batch_size,
            device=module.device,
        )

    def train_dataloader(self) -> DataLoader:
        if "embeddings" in self.pipeline.requirements():
            self._attach_model()
        if not self.controller.sized:
            # a fresh run: the first selection fixes the loader's size (a resumed one restored it,
            # and the loops' epoch is not restored yet at this point)
            self.controller.selection(self.trainer.current_epoch if self.trainer is not None else 0)
        epoch = self.controller.last_epoch
        dataset = self.train_ds
        if self.pipeline.synthetic:
            dataset = self._synthetic_dataset()
        record = str(Path(self.out_dir) / "shards") if self.record_shards and self.out_dir is not None else None
        sampler = SelectionSampler(self.controller, shuffle=self.shuffle, record_dir=record)
        sampler.epoch = epoch
        return self._loader(dataset, sampler)

    def _synthetic_dataset(self):
        if self._train_with_synthetic is None:
            spaces = {s.space for _, s, _ in self.pipeline.synthetic}
            if spaces == {"embedding"}:
                module = self.trainer.lightning_module if self.trainer is not None else None
                if module is None or not hasattr(module.model, "head"):
                    raise ConfigError("model.name: synthetic samples in embedding space need a model with embed() and head()")
                parents = np.concatenate([gp for _, _, gp in self.pipeline.synthetic])
                self._train_with_synthetic = ProvenanceDataset(self.train_ds, parents, np.concatenate([s.lam for _, s, _ in self.pipeline.synthetic]), self.controller.synthetic_labels())
                return self._train_with_synthetic
            if spaces != {"input"}:
                raise ConfigError("pipeline: stages mix input-space and embedding-space synthetic samples; use one space")
            shape = tuple(self.train_ds.x.shape[1:])
            feats = np.concatenate([s.features for _, s, _ in self.pipeline.synthetic]).reshape(-1, *shape)
            labels = self.controller.synthetic_labels()
            self._train_with_synthetic = self.train_ds.with_synthetic(torch.as_tensor(feats, dtype=self.train_ds.x.dtype), torch.as_tensor(labels))
        return self._train_with_synthetic

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_ds, None, batch_size=max(self.batch_size, 512))

    def _loader(self, dataset, sampler, batch_size: int | None = None) -> DataLoader:
        from selectkit.data import batch_collate

        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            shuffle=False,
            collate_fn=batch_collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

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


class ProvenanceDataset(torch.utils.data.Dataset):
    """A training set plus synthetic samples defined by provenance in the model's embedding space.

    Synthetic row ``j`` (global id ``N + j``) is ``embed(x[p0]) + lam * (embed(x[p1]) - embed(x[p0]))``
    with the *current* model, so it follows the representation as it trains. Batches carry the base
    rows as usual plus ``syn_x0``, ``syn_x1``, ``syn_lam``, ``syn_y`` and ``syn_weight``.
    """

    def __init__(self, base: Any, parents: np.ndarray, lam: np.ndarray, labels: np.ndarray) -> None:
        if parents.size and parents.max() >= len(base):
            raise ConfigError("pipeline: embedding-space samples must be made from training rows, not from other synthetic samples")
        self.base = base
        self.parents = torch.as_tensor(parents, dtype=torch.long)
        self.lam = torch.as_tensor(lam, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.n = len(base)

    def __len__(self) -> int:
        return self.n + int(self.labels.shape[0])

    def __getitems__(self, items: list) -> dict[str, torch.Tensor]:
        from selectkit.data import split_items

        idx, w = split_items(items)
        base = idx < self.n
        syn = idx[~base] - self.n
        p = self.parents[syn]
        return {
            "x": self.base.x[idx[base]],
            "y": self.base.y[idx[base]],
            "index": idx[base],
            "weight": w[base],
            "syn_x0": self.base.x[p[:, 0]],
            "syn_x1": self.base.x[p[:, 1]],
            "syn_lam": self.lam[syn],
            "syn_y": self.labels[syn],
            "syn_weight": w[~base],
        }


# ====================================================================================== the books
class RunRecorder(pl.Callback):
    """Per-epoch metrics, wall-clock accounting and time-to-target accuracy.

    ``train_s`` counts training epochs only (validation and selection excluded); ``select_s`` is the
    controller's selection time. ``wall_s`` of a target is ``train_s + select_s`` when it was reached.

    Args:
        out_dir: run directory; rank 0 writes ``metrics.jsonl`` there.
        targets: validation accuracies whose time-to-reach is tracked.
        controller: returns the `SelectionController` (created late, in the data module's setup).
    """

    state_key_name = "selectkit_run_recorder"

    def __init__(self, out_dir: str | Path | None, targets: Sequence[float], controller: Callable[[], SelectionController | None]) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.targets = sorted(float(t) for t in targets)
        self._controller = controller
        self.train_s = 0.0
        self.examples_seen = 0
        self.rows: list[dict[str, Any]] = []
        self.time_to_target: dict[str, dict[str, Any] | None] = {f"{t:g}": None for t in self.targets}
        self._t0 = 0.0
        self._val_s = 0.0
        self._v0 = 0.0

    @property
    def state_key(self) -> str:
        return self.state_key_name

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.examples_in_epoch = 0
        self._val_s = 0.0
        self._t0 = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._v0 = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_s += time.perf_counter() - self._v0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_s += time.perf_counter() - self._t0 - self._val_s
        seen = torch.tensor(float(pl_module.examples_in_epoch), device=pl_module.device)
        self.examples_seen += int(trainer.strategy.reduce(seen, reduce_op="sum").item())
        metrics = trainer.callback_metrics
        controller = self._controller()
        row: dict[str, Any] = {
            "epoch": int(trainer.current_epoch),
            "examples_seen": self.examples_seen,
            "train_s": round(self.train_s, 4),
            "select_s": round(controller.select_s if controller else 0.0, 4),
        }
        for key in ("val_acc", "val_loss", "val_balanced_acc"):
            if key in metrics:
                row[key] = float(metrics[key])
        recall = getattr(pl_module, "val_class_recall", None)
        if recall is not None:
            row["val_class_recall"] = [round(float(r), 5) for r in recall]
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = float(opt.param_groups[0]["lr"])
        self.rows.append(row)
        wall = row["train_s"] + row["select_s"]
        for t in self.targets:
            key = f"{t:g}"
            if self.time_to_target[key] is None and row.get("val_acc", -1.0) >= t:
                self.time_to_target[key] = {"epoch": row["epoch"], "wall_s": round(wall, 4), "examples_seen": row["examples_seen"]}
        for key, value in row.items():
            if key in ("train_s", "select_s", "examples_seen") and pl_module.logger is not None:
                pl_module.log(f"time/{key}" if key != "examples_seen" else "examples_seen", float(value), rank_zero_only=True)
        if trainer.is_global_zero and self.out_dir is not None:
            self.write_metrics()

    def write_metrics(self) -> None:
        """Rewrite ``metrics.jsonl`` from the rows held (so a resumed run carries the earlier epochs)."""
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / ".metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        tmp.replace(self.out_dir / "metrics.jsonl")

    def state_dict(self) -> dict[str, Any]:
        return {
            "train_s": self.train_s,
            "examples_seen": self.examples_seen,
            "rows": self.rows,
            "time_to_target": self.time_to_target,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.train_s = float(state_dict["train_s"])
        self.examples_seen = int(state_dict["examples_seen"])
        self.rows = [dict(r) for r in state_dict["rows"]]
        saved = dict(state_dict.get("time_to_target", {}))
        self.time_to_target = {k: saved.get(k) for k in self.time_to_target}

    def summary(self) -> dict[str, Any]:
        """Final metrics, best accuracy and time-to-target, for ``summary.json``."""
        final = dict(self.rows[-1]) if self.rows else {}
        best = max((r.get("val_acc", float("nan")) for r in self.rows), default=float("nan"))
        return {
            "final": final,
            "best_val_acc": None if math.isnan(best) else best,
            "time_to_target": self.time_to_target,
            "epochs": len(self.rows),
        }
