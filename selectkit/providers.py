"""Named providers: the per-item data selectors ask for, computed in batches only when a stage asks.

=================== ============================================ ===========================
name                what it is                                   parameters
=================== ============================================ ===========================
``labels``          int64 labels (labelled items only)
``features``        flattened raw inputs, float32 ``[n, d]``
``embeddings``      the model's embedding (`ModelAdapter`)
``probs``           class probabilities ``[n, C]`` (classification)
``mc_probs``        MC-dropout probabilities ``[n, T, C]``       ``passes`` (T, default 20)
``losses``          per-sample training loss ``[n]``
``grad_embeddings`` last-layer gradient embeddings ``[n, C*d]``
``pairs``           given (anchor, positive) pairs ``[m, 2]`` of
                    pool positions, when the training split
                    offers ``pairs()`` (`pairs_provider`)
=================== ============================================ ===========================

Model outputs are computed by `PoolScorer` for exactly the ids it is given, in batches: over several
ranks the pool (`selectkit.pool.Pool`) asks each rank for its own shard's ids and gathers only when a
selector reads an output whole. A progress bar shows on rank 0 (off when stderr is not a terminal or
with ``progress=False``), and the size of the output is estimated from the first batch before it is
allocated (`memory_cap_gb`). Random draws inside a model (MC dropout) come from a torch generator
seeded by (seed, epoch, round, the batch's first id and length): a pool's shards start on whole
logical blocks, so with a batch size that divides ``distributed.block_rows`` (1,024 divides 65,536)
the batches, and so the draws, are the same at every world size.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from selectkit.errors import ConfigError
from selectkit.sampler import world_and_rank

_MC = 0x4D43


class PoolScorer:
    """Computes a model output for the pool items it is given, batch by batch.

    Args:
        adapter: the `selectkit.models.ModelAdapter` of the network being trained.
        dataset: the training `BatchDataset` (``gather(ids)`` gives the model's inputs).
        batch_size: items per forward pass.
        device: where the model runs.
        memory_cap_gb: refuse an output larger than this (setting ``providers.memory_cap_gb``).
        seed: seeds in-model randomness with the epoch and round.
        progress: show a progress bar on rank 0 while scoring (off for passes inside a training
            step, where Lightning's bar is the only one).
    """

    def __init__(
        self, adapter: Any, dataset: Any, *, batch_size: int = 1024, device: Any = "cpu", memory_cap_gb: float = 4.0, seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.adapter = adapter
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.memory_cap_gb = float(memory_cap_gb)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.epoch = 0
        self.round = 0
        self.calls = 0

    def score(self, ids: np.ndarray, fn: Callable[..., torch.Tensor], name: str, **params: Any) -> np.ndarray:
        """``fn(adapter, batch, **params)`` for every id, as one float32 array in the order of ``ids``."""
        _, rank = world_and_rank()
        ids = np.asarray(ids, dtype=np.int64)
        model = self.adapter.model
        was_training = model.training
        model.eval()
        chunks: list[torch.Tensor] = []
        self.calls += 1
        bar = tqdm(total=int(ids.shape[0]), desc=f"selectkit: {name}", unit="item", leave=False, disable=None if self.progress and rank == 0 else True)
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                for b, start in enumerate(range(0, ids.shape[0], self.batch_size)):
                    part = ids[start : start + self.batch_size]
                    torch.manual_seed(int(np.random.default_rng([self.seed, self.epoch, self.round, _MC, int(part[0]), part.shape[0]]).integers(2**62)))
                    batch = self.dataset.gather(torch.from_numpy(part))
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    out = fn(self.adapter, batch, **params).float()
                    if b == 0:
                        self._check_memory(name, out, ids.shape[0])
                    chunks.append(out.cpu())
                    bar.update(out.shape[0])
        finally:
            bar.close()
            model.train(was_training)
        if chunks:
            return torch.cat(chunks).numpy()
        return np.zeros((0,), dtype=np.float32)

    def _check_memory(self, name: str, first: torch.Tensor, n: int) -> None:
        per_item = first[0].numel() * 4 if first.shape[0] else 0
        need = per_item * n
        if need > self.memory_cap_gb * 2**30:
            raise ConfigError(
                f"providers.memory_cap_gb: {name} for {n} items needs about {need / 2**30:.1f} GB "
                f"(> {self.memory_cap_gb:g}); raise providers.memory_cap_gb or select from a smaller pool first"
            )


def pairs_provider(anchors: Any, positives: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The ``pairs`` provider of given (anchor id, positive id) pairs (a training split's ``pairs()``).

    For a pool's ids it returns the pairs whose two ends both lie in the pool, as ``[m, 2]`` int64 pool
    positions (anchor first), in the given order. Unlike the per-item providers it has one row per
    pair, not per item.
    """
    a = np.asarray(anchors, dtype=np.int64).reshape(-1)
    p = np.asarray(positives, dtype=np.int64).reshape(-1)
    if a.shape != p.shape:
        raise ConfigError(f"data: pairs() gave {a.shape[0]} anchors but {p.shape[0]} positives; give one positive per anchor entry")

    def pairs(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0 or a.size == 0:
            return np.zeros((0, 2), dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ordered = ids[order]

        def where(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            j = np.minimum(np.searchsorted(ordered, x), ordered.size - 1)
            return order[j], ordered[j] == x

        pa, in_a = where(a)
        pp, in_p = where(p)
        keep = in_a & in_p
        return np.stack([pa[keep], pp[keep]], axis=1).astype(np.int64)

    return pairs


def embed_batch(adapter: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The ``embeddings`` output of one batch: ``adapter.embed`` of its inputs as float32 ``[b, d]``."""
    x = batch["x"]
    return adapter.embed(x).float().reshape(x.shape[0], -1)


def model_providers(scorer: PoolScorer, task: Any) -> dict[str, Callable[..., np.ndarray]]:
    """Provider functions ``ids, **params -> array`` for the model outputs: embeddings plus the task's."""
    def embeddings(ids: np.ndarray) -> np.ndarray:
        return scorer.score(ids, embed_batch, "embeddings")

    out: dict[str, Callable[..., np.ndarray]] = {"embeddings": embeddings}
    for name, fn in task.outputs().items():
        out[name] = (lambda f, nm: (lambda ids, **params: scorer.score(ids, f, nm, **params)))(fn, name)
    return out
