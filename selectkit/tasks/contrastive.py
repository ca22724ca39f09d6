"""Contrastive training on tuples: InfoNCE or triplet loss over L2-normalised embeddings, validated by
label retrieval (recall@k and MRR) through the neighbour layer.

Batches come from `selectkit.sampler.TupleBatchSampler`: whole tuples in tuple order, ``[anchor,
positive, neg_1 .. neg_k]`` per tuple, so a batch's ``T * s`` rows reshape to ``[T, s, ...]``. The tuple
size ``s`` is read from that sampler: the data module hands it to the task (`Contrastive.bind_tuples`)
whenever it builds the training loader, and the sampler answers for the current epoch, so the size may
change between epochs. A tuple's weight and mask are its anchor row's (padding tuples are masked on
every row); the per-tuple losses go to `selectkit.tasks.combine` as one `LossTerm`.

Two seams take plugin objects (Hydra ``_target_`` nodes), so a loss or a miner needs no edit here:

* ``task.loss`` may be a loss object: ``loss(z, ids, labels, live) -> (losses, valid)`` with ``z`` the
  L2-normalised ``[T, s, d]`` tuple embeddings, ``ids`` and ``labels`` ``[T, s]`` int64 (the rows'
  dataset ids and labels), ``live`` ``[T]`` bool; it returns per-tuple losses ``[T]`` and a ``[T]``
  bool of the tuples they apply to (others are masked out like padding).
* ``task.miner`` may be an in-batch miner: ``miner(z, labels, mask=..., ids=...) -> (a, p, n)``, three
  int64 ``[m]`` row indices into the batch, computed without gradients. With a miner the batch's rows
  are embedded once and the loss (built-in or object) is taken over the mined ``(a, p, n)`` triples
  instead of the sampler's tuples; each triple's weight is its anchor row's.

A validation set whose batches carry a bool ``query`` key is split into queries (True) and the corpus
they retrieve from (False), instead of every row retrieving from the others (``task.corpus=val``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selectkit.errors import ConfigError, SelectionError
from selectkit.hooks import LossTerm
from selectkit.tasks.base import Task

#: Valid values of ``task.loss``.
LOSSES = ("infonce", "triplet")
#: Valid values of ``task.corpus``.
CORPORA = ("train", "val")
#: Rows per forward pass when the task embeds the training corpus.
_EMBED_BATCH = 1024


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def infonce_losses(z: torch.Tensor, ids: torch.Tensor, live: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-tuple InfoNCE of ``[T, s, d]`` normalised embeddings.

    Tuple ``i``'s anchor is scored against its positive, its own negatives, and the positives of the
    batch's other live tuples (in-batch negatives), leaving out any of those that is the same item
    (``ids``) as the anchor or its positive: ``log sum exp(logits) - a.p / temperature``.
    """
    a, p, n = z[:, 0], z[:, 1], z[:, 2:]
    pos = (a * p).sum(-1) / temperature
    own = torch.einsum("td,tkd->tk", a, n) / temperature
    cross = a @ p.T / temperature
    t = z.shape[0]
    other = ~torch.eye(t, dtype=torch.bool, device=z.device) & live.view(1, t)
    other &= (ids[:, 1].view(1, t) != ids[:, 0].view(t, 1)) & (ids[:, 1].view(1, t) != ids[:, 1].view(t, 1))
    logits = torch.cat([pos[:, None], own, cross.masked_fill(~other, -math.inf)], dim=1)
    return torch.logsumexp(logits, dim=1) - pos


def _empty_term(z: torch.Tensor) -> LossTerm:
    """A loss term of one masked row, still on the graph of ``z`` (a batch where nothing was mined)."""
    zero = (z.sum() * 0.0).view(1)
    return LossTerm(zero, torch.ones_like(zero), torch.zeros(1, dtype=torch.bool, device=z.device))


def triplet_losses(z: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-tuple triplet loss of ``[T, s, d]`` embeddings: ``max(0, d(a, p) - d(a, n) + margin)``
    averaged over the tuple's negatives, with Euclidean distances."""
    a, p, n = z[:, 0], z[:, 1], z[:, 2:]
    d_ap = ((a - p) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    d_an = ((a[:, None] - n) ** 2).sum(-1).clamp_min(1e-12).sqrt()
    return F.relu(d_ap[:, None] - d_an + margin).mean(dim=1)


def retrieval_metrics(
    queries: np.ndarray,
    query_labels: np.ndarray,
    corpus: np.ndarray,
    corpus_labels: np.ndarray,
    ks: Sequence[int],
    *,
    self_ids: np.ndarray | None = None,
    memory_cap_gb: float = 8.0,
) -> dict[str, float]:
    """Recall@k and MRR of retrieving items of the query's label, by cosine similarity.

    A query's hit is a corpus item with its label; ``recall@k`` is the share of queries with a hit among
    their ``k`` nearest corpus items, ``mrr`` the mean reciprocal rank of the first hit within the
    ``max(ks)`` nearest (0 without one). ``self_ids[i]`` is query ``i``'s own row in the corpus (left
    out of its list) when the queries are corpus items. Neighbours come from `selectkit.neighbors.knn`:
    exact, blocked and memory-bounded.
    """
    from selectkit.neighbors import NeighborConfig, knn

    nq, n = int(queries.shape[0]), int(corpus.shape[0])
    top = max(int(k) for k in ks)
    extra = 0 if self_ids is None else 1
    if nq == 0 or n - extra < 1:
        return {**{f"recall@{k}": 0.0 for k in ks}, "mrr": 0.0}
    depth = min(top + extra, n)
    config = NeighborConfig(metric="cosine", memory_cap_gb=memory_cap_gb)
    _, idx = knn(np.ascontiguousarray(corpus, dtype=np.float32), np.ascontiguousarray(queries, dtype=np.float32), k=depth, config=config)
    if self_ids is not None:
        found = idx == np.asarray(self_ids)[:, None]
        drop = np.where(found.any(axis=1), found.argmax(axis=1), depth - 1)
        keep = np.ones(idx.shape, dtype=bool)
        keep[np.arange(nq), drop] = False
        idx = idx[keep].reshape(nq, depth - 1)
    hits = np.asarray(corpus_labels)[idx] == np.asarray(query_labels)[:, None]
    out = {f"recall@{k}": float(hits[:, : int(k)].any(axis=1).mean()) for k in ks}
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1.0, np.inf)
    out["mrr"] = float((1.0 / first).mean())
    return out


def _gather_rows(module: Any, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's rows of ``tensors`` (equal row counts within a rank), concatenated in rank order."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(tensors)
    world = dist.get_world_size()

    def gather(t: torch.Tensor) -> list[torch.Tensor]:
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        return parts

    counts = [int(c) for c in gather(torch.tensor([tensors[0].shape[0]], device=module.device))]
    width = max(counts)
    out = []
    for t in tensors:
        padded = torch.cat([t, t.new_zeros((width - t.shape[0], *t.shape[1:]))])
        out.append(torch.cat([part[:c] for part, c in zip(gather(padded), counts)]))
    return out


class Contrastive(Task):
    """Metric learning on ``(anchor, positive, negatives)`` tuples.

    Args:
        loss: ``infonce`` (anchor vs its positive against its negatives and the batch's other positives,
            at ``temperature``) or ``triplet`` (``max(0, d(a, p) - d(a, n) + margin)``, mean over the
            tuple's negatives; needs at least one negative per tuple), or a loss object (see the
            module docstring).
        temperature: InfoNCE temperature, > 0.
        margin: triplet margin, >= 0 (distances between L2-normalised embeddings lie in [0, 2]).
        recall_k: the ``k`` of the logged ``val_recall@k``; the smallest is the monitored metric.
        corpus: what validation queries retrieve from: ``val`` (the other validation rows) or ``train``
            (the labelled training rows).
        weight_norm: normalisation of the weighted tuple losses (`selectkit.tasks.combine`).
        max_queries: validation rows used as queries (the first ones), or null for all.
        memory_cap_gb: memory cap of the retrieval search (the neighbour layer refuses larger jobs).
        miner: an in-batch miner (see the module docstring), or None to train on the sampler's tuples.

    The classifier head of the network (`selectkit.models.ModelAdapter.head`) is frozen: only the
    embedding is trained. A network with other layers past its embedding needs
    ``trainer.strategy=ddp_find_unused_parameters_true`` under DDP.

    Validation logs ``val_recall@k`` for each ``k`` and ``val_mrr`` (the mean reciprocal rank of the
    first hit within the ``max(recall_k)`` nearest). Under DDP each rank embeds its validation shard;
    the rows are gathered and put in dataset order, so every rank computes the single-process result.
    """

    name = "contrastive"

    def __init__(
        self,
        *,
        loss: str = "infonce",
        temperature: float = 0.1,
        margin: float = 0.2,
        recall_k: Sequence[int] = (1, 5, 10),
        corpus: str = "val",
        weight_norm: str = "mean",
        max_queries: int | None = 10000,
        memory_cap_gb: float = 8.0,
        miner: Any = None,
    ) -> None:
        super().__init__(weight_norm=weight_norm)
        if isinstance(loss, str) or not callable(loss):
            if loss not in LOSSES:
                raise ConfigError(f"task.loss must be one of {', '.join(LOSSES)} or a loss object (_target_), got {loss!r}")
        if miner is not None and not callable(miner):
            raise ConfigError(f"task.miner must be an in-batch miner (a _target_) or null, got {miner!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(f"task.temperature must be a number > 0, got {temperature!r}")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise ConfigError(f"task.margin must be a number >= 0, got {margin!r}")
        ks = list(recall_k) if isinstance(recall_k, (list, tuple)) else None
        if not ks or not all(_is_int(k) and k >= 1 for k in ks):
            raise ConfigError(f"task.recall_k must be a non-empty list of integers >= 1, got {recall_k!r}")
        if corpus not in CORPORA:
            raise ConfigError(f"task.corpus must be one of {', '.join(CORPORA)}, got {corpus!r}")
        if max_queries is not None and not (_is_int(max_queries) and max_queries >= 1):
            raise ConfigError(f"task.max_queries must be an integer >= 1 or null, got {max_queries!r}")
        if isinstance(memory_cap_gb, bool) or not isinstance(memory_cap_gb, (int, float)) or not memory_cap_gb > 0:
            raise ConfigError(f"task.memory_cap_gb must be a number > 0, got {memory_cap_gb!r}")
        self.loss = loss
        self.temperature = float(temperature)
        self.margin = float(margin)
        self.recall_k = sorted({int(k) for k in ks})
        self.corpus = corpus
        self.max_queries = None if max_queries is None else int(max_queries)
        self.memory_cap_gb = float(memory_cap_gb)
        self.miner = miner
        self.monitor = f"val_recall@{self.recall_k[0]}"
        self._tuples: Any = None

    # ------------------------------------------------------------------ training
    def bind_tuples(self, sampler: Any) -> None:
        """Read the tuple size from ``sampler`` (anything with a ``tuple_size``: the training loader's
        `selectkit.sampler.TupleBatchSampler`); the data module calls this when it builds the loader."""
        self._tuples = sampler

    @property
    def tuple_size(self) -> int:
        """Items per tuple in the current epoch; `ConfigError` when training is not on tuples."""
        if self._tuples is None:
            raise ConfigError("task=contrastive trains on tuples: end the pipeline with a tuple selector (e.g. selector=random_tuples)")
        return int(self._tuples.tuple_size)

    def check_model(self, adapter: Any) -> None:
        """Refuse unlabelled data; freeze the classifier head, which the embedding losses never reach
        (so DDP does not wait for its gradients)."""
        if self.num_classes is None:
            raise ConfigError("task=contrastive needs labelled data (data: labels are missing); its tuples and retrieval metrics are by label")
        head = getattr(adapter, "head", None)
        if head is not None:
            head.requires_grad_(False)

    def embed(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings ``[b, d]`` of ``x`` (``module.adapter.embed``)."""
        return F.normalize(module.adapter.embed(x).float().flatten(1), dim=1)

    def loss_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        s = self.tuple_size
        rows = int(batch["x"].shape[0])
        if rows % s:
            raise SelectionError(f"a training batch of {rows} rows does not hold whole tuples of {s} items")
        if self.miner is None and isinstance(self.loss, str) and self.loss == "triplet" and s < 3:
            raise ConfigError("task.loss=triplet needs negatives in every tuple; set selector.negatives >= 1 or use task.loss=infonce")
        if self.miner is not None:
            return self._mined_terms(module, batch)
        t = rows // s
        z = self.embed(module, batch["x"]).view(t, s, -1)
        live = batch["mask"].view(t, s)[:, 0]
        weight = batch["weight"].view(t, s)[:, 0]
        ids = batch["index"].view(t, s)
        labels = batch["y"].view(t, s) if "y" in batch else None
        return [self._tuple_term(z, ids, labels, live, weight)]

    def _tuple_term(self, z: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor | None, live: torch.Tensor, weight: torch.Tensor) -> LossTerm:
        """The loss term of ``[T, s, d]`` tuple embeddings."""
        if not isinstance(self.loss, str):
            loss, valid = self.loss(z, ids, labels, live)
            return LossTerm(loss, weight, live & valid.to(torch.bool))
        if self.loss == "infonce":
            return LossTerm(infonce_losses(z, ids, live, self.temperature), weight, live)
        return LossTerm(triplet_losses(z, self.margin), weight, live)

    def _mined_terms(self, module: Any, batch: Mapping[str, torch.Tensor]) -> list[LossTerm]:
        """The loss over the ``(a, p, n)`` triples the miner finds among the batch's rows."""
        if "y" not in batch:
            raise ConfigError("task.miner mines by label: the training batches have no labels (data)")
        z = self.embed(module, batch["x"])
        a, p, n = self.miner(z.detach(), batch["y"], mask=batch["mask"], ids=batch["index"])
        if a.numel() == 0:
            return [_empty_term(z)]
        rows = torch.stack([a, p, n], dim=1).to(z.device)
        live = torch.ones(rows.shape[0], dtype=torch.bool, device=z.device)
        return [self._tuple_term(z[rows], batch["index"][rows], batch["y"][rows], live, batch["weight"][a])]

    # ------------------------------------------------------------------ validation
    def validation_start(self, module: Any) -> None:
        self._z: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []
        self._i: list[torch.Tensor] = []
        self._q: list[torch.Tensor] = []

    def validation_step(self, module: Any, batch: Mapping[str, torch.Tensor]) -> None:
        if "y" not in batch:
            raise ConfigError("task=contrastive validates by label: the validation set has no labels (data)")
        keep = batch["mask"] if "mask" in batch else torch.ones_like(batch["y"], dtype=torch.bool)
        self._z.append(self.embed(module, batch["x"])[keep])
        self._y.append(batch["y"][keep])
        self._i.append(batch["index"][keep].to(batch["y"].device))
        if "query" in batch:
            self._q.append(batch["query"][keep].to(device=batch["y"].device, dtype=torch.bool))

    def validation_end(self, module: Any) -> dict[str, Any]:
        if not self._z:
            return {}
        parts = [torch.cat(self._z), torch.cat(self._y), torch.cat(self._i)] + ([torch.cat(self._q).to(torch.uint8)] if self._q else [])
        z, y, i, *q = _gather_rows(module, *parts)
        order = torch.argsort(i)
        z, y = z[order].cpu().numpy(), y[order].cpu().numpy()
        nq = z.shape[0] if self.max_queries is None else min(self.max_queries, z.shape[0])
        if q and self.corpus == "val":
            is_query = q[0][order].cpu().numpy().astype(bool)
            queries = np.flatnonzero(is_query)[: self.max_queries]
            metrics = retrieval_metrics(z[queries], y[queries], z[~is_query], y[~is_query], self.recall_k, memory_cap_gb=self.memory_cap_gb)
        elif self.corpus == "val":
            metrics = retrieval_metrics(z[:nq], y[:nq], z, y, self.recall_k, self_ids=np.arange(nq), memory_cap_gb=self.memory_cap_gb)
        else:
            cz, cy = self._train_corpus(module, z.shape[1])
            metrics = retrieval_metrics(z[:nq], y[:nq], cz, cy, self.recall_k, memory_cap_gb=self.memory_cap_gb)
        return {f"val_{k}": v for k, v in metrics.items()}

    def _train_corpus(self, module: Any, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and labels of the labelled training rows, each rank embedding a strided share."""
        dataset = module.trainer.datamodule.train_ds
        labels = dataset.labels()
        if labels is None:
            raise ConfigError("task.corpus=train needs a labelled training set; use task.corpus=val")
        labels = np.asarray(labels, dtype=np.int64)
        world, rank = module.trainer.world_size, module.trainer.global_rank
        mine = np.flatnonzero(labels >= 0)[rank::world]
        parts = [torch.zeros((0, dim), device=module.device)]
        with torch.no_grad():
            for start in range(0, mine.shape[0], _EMBED_BATCH):
                x = dataset.gather(torch.as_tensor(mine[start : start + _EMBED_BATCH]))["x"].to(module.device)
                parts.append(self.embed(module, x))
        z = torch.cat(parts)
        ids = torch.as_tensor(mine, device=module.device)
        z, ids = _gather_rows(module, z, ids)
        order = torch.argsort(ids)
        return z[order].cpu().numpy(), labels[ids[order].cpu().numpy()]
