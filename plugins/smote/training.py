"""How SMOTE's embedding-space samples reach training: a `TrainingHook` of the SMOTE family.

A sample made in the model's embedding space is kept as provenance (its two parent rows and the
interpolation factor), never as a frozen vector: at every training step it is re-made from its parents
with the *current* model, ``z = embed(x[p0]) + lam * (embed(x[p1]) - embed(x[p0]))``, and trained on
through the model's map from embeddings to outputs (`selectkit.models.ModelAdapter.output_map`: its
``head()``, or the chain of modules after ``model.embedding_layer``, checked before training by the
selector's `check_model`). So it follows the representation as it learns.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from selectkit.data import BatchDataset
from selectkit.errors import ConfigError
from selectkit.hooks import LossTerm, TrainingHook


class ProvenanceRows(BatchDataset):
    """A training set plus rows defined by provenance: ids ``>= len(base)`` are the synthetic samples.

    ``gather`` returns the base rows as usual (``x``, ``y``) and the synthetic rows as their parents'
    inputs (``syn_x0``, ``syn_x1``), ``syn_lam`` and ``syn_y``, plus ``base_rows`` (which batch positions
    are base rows) so the hook can split the batch's weights and mask.
    """

    def __init__(self, base: BatchDataset, parents: np.ndarray, lam: np.ndarray, labels: np.ndarray, setting: str) -> None:
        if parents.size and parents.max() >= len(base):
            raise ConfigError(f"{setting}: embedding-space samples must be made from training rows, not from other synthetic samples")
        self.base = base
        self.parents = torch.as_tensor(parents, dtype=torch.long)
        self.lam = torch.as_tensor(lam, dtype=torch.float32)
        self.syn_labels = torch.as_tensor(labels, dtype=torch.long)
        self.n = len(base)

    def __len__(self) -> int:
        return self.n + int(self.syn_labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.base.input_shape)

    def labels(self) -> np.ndarray | None:
        y = self.base.labels()
        return None if y is None else np.concatenate([y, self.syn_labels.numpy()])

    def gather(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = torch.as_tensor(ids, dtype=torch.long)
        base_rows = ids < self.n
        out = self.base.gather(ids[base_rows])
        syn = ids[~base_rows] - self.n
        p = self.parents[syn]
        x0 = self.base.gather(p[:, 0])["x"]
        x1 = self.base.gather(p[:, 1])["x"]
        out.update(syn_x0=x0, syn_x1=x1, syn_lam=self.lam[syn].to(x0.device), syn_y=self.syn_labels[syn].to(x0.device), base_rows=base_rows.to(x0.device))
        return out


class EmbeddingInterpolation(TrainingHook):
    """Trains on embedding-space samples re-made from their parents with the current model."""

    def wrap_dataset(self, dataset: Any) -> Any:
        if not self.blocks:
            return dataset
        if len(dataset) != self.blocks[0][2]:
            raise ConfigError(f"pipeline.stages.{self.stage}: embedding-space samples must come from the first sample-creating stage")
        parents = np.concatenate([gp for _, gp, _ in self.blocks])
        lam = np.concatenate([s.lam for s, _, _ in self.blocks])
        labels = np.concatenate([s.labels for s, _, _ in self.blocks])
        return ProvenanceRows(dataset, parents, lam, labels, f"pipeline.stages.{self.stage}")

    def prepare_batch(self, module: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        if "base_rows" not in batch:
            return batch
        rows = batch.pop("base_rows")
        out = dict(batch)
        for key in ("index", "weight", "mask"):
            out[f"syn_{key}"] = batch[key][~rows]
            out[key] = batch[key][rows]
        return out

    def loss_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        if "syn_lam" not in batch or batch["syn_lam"].numel() == 0:
            return []
        adapter = module.adapter
        e0, e1 = adapter.embed(batch["syn_x0"]), adapter.embed(batch["syn_x1"])
        lam = batch["syn_lam"].to(e0.dtype).unsqueeze(1)
        logits = adapter.logits_from_embedding(e0 + lam * (e1 - e0), batch["syn_x0"])
        loss = F.cross_entropy(logits, batch["syn_y"], reduction="none")
        return [LossTerm(loss, batch["syn_weight"], batch["syn_mask"])]
