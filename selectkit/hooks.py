"""`TrainingHook`: how a plugin reaches training, beyond choosing what to train on.

The core holds no family-specific code. A selector whose results need more than rows of the training
set (SMOTE's samples in a model's embedding space, for instance) returns a hook from
`selectkit.Selector.training_hook`; the core then

* passes the training dataset through `TrainingHook.wrap_dataset` whenever it builds the training
  loader (once, and again only when the dataset grows),
* passes every training batch through `TrainingHook.prepare_batch` before the task sees it, with the
  training module (its model, ``current_epoch`` and ``trainer``: rank, world size, global step) and
  the batch's position in the epoch,
* adds the loss terms of `TrainingHook.loss_terms` to every training batch's own terms, before the
  weighted loss is normalised (`selectkit.tasks.combine`), and
* at the end of every training epoch, on every rank, asks `TrainingHook.epoch_summary` what the hook
  did; a non-empty summary goes in the epoch's row of ``metrics.jsonl`` under ``hooks.<stage>``.

The core checkpoints no hook state: a hook rebuilds what it needs from its selector's state (which is
checkpointed) and the model, and must rebuild it the same way after a resume.

A `LossTerm` is ``(per_sample_loss, weight, mask)``: three ``[b]`` tensors; ``mask`` is False for padding.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import torch


class LossTerm(NamedTuple):
    """Per-sample losses with their importance weights and the mask of real (non-padding) rows."""

    loss: torch.Tensor
    weight: torch.Tensor
    mask: torch.Tensor


class TrainingHook:
    """Base class of plugin hooks into training; every method is optional.

    ``stage`` is the pipeline stage (its YAML key) that contributed the hook; ``blocks`` the synthetic
    samples that stage created, as ``(Synthetic, global parent ids, first global id)``; ``seed`` the
    pipeline's seed (random draws during training come from it, the epoch and the step, never rank).
    `selectkit.pipeline.Pipeline.hooks` sets all three.
    """

    def __init__(self, stage: str = "", blocks: Sequence[tuple[Any, Any, int]] = (), seed: int = 0) -> None:
        self.stage = stage
        self.blocks = list(blocks)
        self.seed = int(seed)

    def wrap_dataset(self, dataset: Any) -> Any:
        """The training dataset (a `selectkit.data.BatchDataset`) this hook's results need."""
        return dataset

    def prepare_batch(self, module: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Reshape or rewrite a training batch before the task computes its loss (e.g. split off hook
        rows); ``module`` is the `selectkit.lightning.TaskModule`, ``batch_idx`` the batch's position
        in the current epoch (from 0)."""
        return batch

    def loss_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        """Extra loss terms of one training batch (``module`` is the `selectkit.lightning.TaskModule`)."""
        return []

    def epoch_summary(self, module: Any) -> dict[str, Any]:
        """What the hook did in the training epoch that just ended (JSON-serialisable), or ``{}``.

        Called on every rank (collectives are allowed here, e.g. to sum counts over ranks); rank 0's
        answer is recorded.
        """
        return {}
