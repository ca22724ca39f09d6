"""Classification: weighted cross-entropy; accuracy, balanced accuracy and per-class recall; the model
outputs active-learning selectors read (probabilities, MC-dropout probabilities, per-sample losses,
last-layer gradient embeddings)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from selectkit.errors import ConfigError
from selectkit.hooks import LossTerm
from selectkit.tasks.base import OutputFn, Task


def _probs(adapter: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.softmax(adapter.model(batch["x"]).float(), dim=1)


def _mc_probs(adapter: Any, batch: Mapping[str, torch.Tensor], passes: int = 20) -> torch.Tensor:
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ConfigError(f"mc_probs: passes must be an integer >= 1, got {passes!r} (the selector's MC-sample setting)")
    if not adapter.has_dropout():
        raise ConfigError(f"model: {type(adapter.model).__name__} has no dropout layer with p > 0, so MC dropout would repeat one prediction; use a model with dropout (e.g. model.dropout=0.2)")
    layers = adapter.dropout_only_train()
    try:
        return torch.stack([torch.softmax(adapter.model(batch["x"]).float(), dim=1) for _ in range(passes)], dim=1)
    finally:
        for m in layers:
            m.eval()


def _losses(adapter: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if "y" not in batch:
        raise ConfigError("losses: the pool has no labels for these items (per-sample losses need labelled items)")
    return F.cross_entropy(adapter.model(batch["x"]).float(), batch["y"], reduction="none")


def _grad_embeddings(adapter: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if adapter.head is None:
        raise ConfigError(
            f"grad_embeddings: {type(adapter.model).__name__} has no classifier head (an nn.Linear with num_classes outputs); "
            "set model.head_layer to name it"
        )
    logits, h = adapter._capture(adapter.head, batch["x"], inputs=True)
    p = torch.softmax(logits.float(), dim=1)
    grad = p.clone()
    grad[torch.arange(p.shape[0]), p.argmax(dim=1)] -= 1.0
    # gradient of the cross-entropy at the predicted label w.r.t. the head's weights: (p - e_yhat) outer h
    return (grad.unsqueeze(2) * h.float().flatten(1).unsqueeze(1)).flatten(1)


class Classification(Task):
    """Cross-entropy over ``num_classes`` logits, weighted per sample.

    Validation logs ``val_acc``, ``val_loss``, ``val_balanced_acc`` (mean recall over the classes present)
    and records ``val_class_recall``.
    """

    name = "classification"

    def loss_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        logits = module.model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"], reduction="none")
        return [LossTerm(loss, batch["weight"], batch["mask"])]

    def check_model(self, adapter: Any) -> None:
        if self.num_classes is None:
            raise ConfigError("task=classification needs labelled data with classes (data: labels are missing)")

    def check_batch(self, adapter: Any, batch: Mapping[str, torch.Tensor]) -> None:
        """One logit per class and item."""
        adapter.check_output_width(adapter.model(batch["x"]))

    def validation_start(self, module: Any) -> None:
        k = self.num_classes or 1
        dev = module.device
        self._loss = torch.zeros((), device=dev, dtype=torch.float64)
        self._correct = torch.zeros(k, device=dev, dtype=torch.float64)
        self._count = torch.zeros(k, device=dev, dtype=torch.float64)

    def validation_step(self, module: Any, batch: Mapping[str, torch.Tensor]) -> None:
        logits = module.model(batch["x"])
        y = batch["y"]
        keep = batch["mask"] if "mask" in batch else torch.ones_like(y, dtype=torch.bool)
        logits, y = logits[keep], y[keep]
        self._loss += F.cross_entropy(logits, y, reduction="sum").double()
        hit = (logits.argmax(dim=1) == y).double()
        self._correct.index_add_(0, y, hit)
        self._count.index_add_(0, y, torch.ones_like(hit))

    def validation_end(self, module: Any) -> dict[str, Any]:
        reduce = module.trainer.strategy.reduce
        loss, correct, count = (reduce(v, reduce_op="sum") for v in (self._loss, self._correct, self._count))
        total = count.sum().clamp_min(1)
        recall = correct / count.clamp_min(1)
        present = count > 0
        return {
            "val_acc": float(correct.sum() / total),
            "val_loss": float(loss / total),
            "val_balanced_acc": float(recall[present].mean()) if bool(present.any()) else 0.0,
            "val_class_recall": [round(float(r), 5) for r in recall.cpu()],
        }

    def outputs(self) -> dict[str, OutputFn]:
        return {"probs": _probs, "mc_probs": _mc_probs, "losses": _losses, "grad_embeddings": _grad_embeddings}
