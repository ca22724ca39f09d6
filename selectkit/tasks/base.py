"""The `Task` contract: what varies by kind of training (loss, validation metrics, model outputs).

A task is chosen with the ``task`` config group and instantiated by ``_target_``. The core's
`selectkit.lightning.TaskModule` calls it for every batch; selectors reach its model outputs through
named providers (`selectkit.providers`), so a selector that needs class probabilities works with any
task that can give them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from selectkit.errors import ConfigError
from selectkit.hooks import LossTerm

#: Valid values of ``task.weight_norm``.
WEIGHT_NORMS = ("mean", "self_normalized")

#: A model output a task offers: ``fn(adapter, batch, **params) -> [b, ...] tensor``.
OutputFn = Callable[..., torch.Tensor]


def combine(terms: Sequence[LossTerm], weight_norm: str = "mean") -> tuple[torch.Tensor, int]:
    """The batch loss of ``terms`` and its count of real rows.

    ``mean`` (default): ``sum(w * l) / (real rows)``; with weights that follow the `Selection` contract
    this is an unbiased estimate of the full-data mean loss at an unchanged learning-rate scale.
    ``self_normalized``: ``sum(w * l) / sum(w)`` (a ratio estimate: scale-free, slightly biased).
    Padding rows (mask False) count nowhere.
    """
    loss = torch.cat([t.loss for t in terms])
    weight = torch.cat([t.weight.to(loss.dtype) for t in terms])
    mask = torch.cat([t.mask for t in terms]).to(loss.dtype)
    live = int(mask.sum().item())
    total = (loss * weight * mask).sum()
    if weight_norm == "mean":
        return total / max(live, 1), live
    denom = (weight * mask).sum()
    return total / denom.clamp_min(torch.finfo(loss.dtype).tiny), live


class Task:
    """Base class of tasks. Subclasses implement the loss of a batch and the validation metrics.

    Args:
        weight_norm: how a batch's weighted losses are normalised (`combine`): ``mean`` | ``self_normalized``.
    """

    name = ""
    #: the metric whose value is tracked for time-to-target and the best checkpoint.
    monitor = "val_acc"

    def __init__(self, *, weight_norm: str = "mean") -> None:
        if weight_norm not in WEIGHT_NORMS:
            raise ConfigError(f"task.weight_norm must be one of {', '.join(WEIGHT_NORMS)}, got {weight_norm!r}")
        self.weight_norm = weight_norm
        self.meta: dict[str, Any] = {}

    def setup(self, meta: Mapping[str, Any]) -> None:
        """Called once with the data source's ``meta`` (``num_classes``, ``classes``, ``input_shape``)."""
        self.meta = dict(meta)

    @property
    def num_classes(self) -> int | None:
        """Classes of the data, when it has them."""
        n = self.meta.get("num_classes")
        return None if n is None else int(n)

    def loss_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        """The loss terms of one training batch (per-sample losses, weights, mask)."""
        raise NotImplementedError

    def validation_start(self, module: Any) -> None:
        """Reset validation accumulators."""

    def validation_step(self, module: Any, batch: Mapping[str, torch.Tensor]) -> None:
        """Accumulate one validation batch."""

    def validation_end(self, module: Any) -> dict[str, Any]:
        """Metrics of the validation pass (reduced over ranks): floats are logged, lists recorded."""
        return {}

    def outputs(self) -> dict[str, OutputFn]:
        """Model outputs this task can compute per item, by provider name (besides ``embeddings``)."""
        return {}

    def bind_tuples(self, sampler: Any) -> None:
        """Called with the `selectkit.sampler.TupleBatchSampler` when the pipeline returns tuples (a
        tuple task reads the tuple size from it); others ignore it."""

    def check_model(self, adapter: Any) -> None:
        """Refuse a network this task cannot train, naming the setting (default: accept)."""

    def check_batch(self, adapter: Any, batch: Mapping[str, torch.Tensor]) -> None:
        """Before training, refuse a network whose outputs on ``batch`` (a few real training rows, in eval
        mode without gradients) this task cannot train on, naming the setting (default: accept)."""
