"""`SelectionController`: runs the pipeline per epoch over a training set and keeps the books.

It owns the pipeline, offers each stage the data it asks for (labels, raw features, model embeddings),
times every selection, writes the selection manifest (``selections/epoch_NNNN.npz``) on rank 0, and
round-trips all of it through ``state_dict`` so a resumed run makes the same selections.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from selectkit.pipeline import Pipeline
from selectkit.selector import Pool


class SelectionController:
    """Per-epoch selections of a `Pipeline` over a base training set.

    Args:
        pipeline: the stages to run.
        labels: int64 labels of the base training set, ``[N]``.
        features: callable returning flattened raw inputs of given ids (``[n, d]`` float32).
        out_dir: where to write the manifest; ``None`` writes nothing.
        rank: process rank; only rank 0 writes files.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        labels: np.ndarray,
        features: Callable[[np.ndarray], np.ndarray],
        *,
        out_dir: str | Path | None = None,
        rank: int = 0,
    ) -> None:
        self.pipeline = pipeline
        self.seed = pipeline.seed
        self.base_labels = np.asarray(labels, dtype=np.int64)
        self.base_size = int(self.base_labels.shape[0])
        self._features = features
        self.embedder: Callable[[np.ndarray], np.ndarray] | None = None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rank = rank
        self.select_s = 0.0
        self._current: tuple[int, np.ndarray, np.ndarray | None] | None = None
        self._size: int | None = None
        self._last_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.random_order = bool(pipeline.stages[-1].selector.random_order) if pipeline.stages else False

    # ------------------------------------------------------------------ data for the stages
    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        """Labels of global ids, synthetic ones included."""
        out = np.empty(ids.shape[0], dtype=np.int64)
        base = ids < self.base_size
        out[base] = self.base_labels[ids[base]]
        if not base.all():
            out[~base] = self.synthetic_labels()[ids[~base] - self.base_size]
        return out

    def synthetic_labels(self) -> np.ndarray:
        """Labels of every synthetic sample, in global-id order."""
        parts = [s.labels for _, s, _ in self.pipeline.synthetic]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _make_pool(self, ids: np.ndarray | int, weights: np.ndarray | None) -> Pool:
        providers: dict[str, Callable[[np.ndarray], np.ndarray]] = {"labels": self.labels_of}
        if isinstance(ids, int) or bool((ids < self.base_size).all()):
            providers["features"] = self._features
            if self.embedder is not None:
                providers["embeddings"] = self.embedder
        return Pool(ids, weights=weights, providers=providers)

    # ------------------------------------------------------------------ selections
    @property
    def sized(self) -> bool:
        """Whether the selection size is known (after the first selection, or restored from a checkpoint)."""
        return self._size is not None

    @property
    def last_epoch(self) -> int:
        """The epoch of the latest selection made or restored (0 before any)."""
        return self._last_epoch

    def expected_size(self) -> int:
        """Size of every epoch's selection, fixed by the first one."""
        if self._size is None:
            self.selection(self._current[0] if self._current else 0)
        assert self._size is not None
        return self._size

    def selection(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The (global ids, weights) selected for ``epoch``; computed once per epoch."""
        if self._current is not None and self._current[0] == epoch:
            return self._current[1], self._current[2]
        start = time.perf_counter()
        out = self.pipeline.run(epoch, self.base_size, self._make_pool)
        self.select_s += time.perf_counter() - start
        if self._size is None:
            self._size = int(out.ids.shape[0])
        self._current = (epoch, out.ids, out.weights)
        self._last_epoch = epoch
        self._write_manifest(epoch, out.ids, out.weights, out.ran)
        return out.ids, out.weights

    def _write_manifest(self, epoch: int, ids: np.ndarray, weights: np.ndarray | None, ran: list[str]) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        folder = self.out_dir / "selections"
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"indices": ids.astype(np.int64, copy=False)}
        if weights is not None:
            arrays["weights"] = weights.astype(np.float32, copy=False)
        tmp = folder / f".epoch_{epoch:04d}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(folder / f"epoch_{epoch:04d}.npz")
        if self.pipeline.synthetic and not (folder / "synthetic.npz").exists():
            syn = self.pipeline.synthetic
            np.savez(
                folder / "synthetic.npz",
                ids=np.arange(self.base_size, self.base_size + self.pipeline.num_synthetic, dtype=np.int64),
                labels=np.concatenate([s.labels for _, s, _ in syn]),
                parents=np.concatenate([gp for _, _, gp in syn]),
                lam=np.concatenate([s.lam for _, s, _ in syn]),
                features=np.concatenate([s.features.reshape(len(s), -1) for _, s, _ in syn]),
                stage=np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s, _ in syn]),
                space=np.array([s.space for _, s, _ in syn]),
            )
        self.history.append({"epoch": epoch, "size": int(ids.shape[0]), "ran": ran})

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Pipeline state plus the time spent selecting so far."""
        return {"pipeline": self.pipeline.state_dict(), "select_s": self.select_s, "size": self._size, "last_epoch": self._last_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict`."""
        self.pipeline.load_state_dict(state["pipeline"])
        self.select_s = float(state.get("select_s", 0.0))
        self._size = state.get("size")
        self._last_epoch = int(state.get("last_epoch", 0))
        self._current = None


def model_embedder(
    module: torch.nn.Module,
    inputs: Callable[[np.ndarray], torch.Tensor],
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> Callable[[np.ndarray], np.ndarray]:
    """A provider computing ``module.embed`` for global ids, sharded over ranks and gathered.

    Each rank embeds a strided shard of the ids; the shards are gathered so every rank holds the same
    ``[n, d]`` array in id order.
    """
    import torch.distributed as dist

    def embed(ids: np.ndarray) -> np.ndarray:
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() else (1, 0)
        mine = ids[rank::world]
        was_training = module.training
        module.eval()
        chunks = []
        starts = range(0, mine.shape[0], batch_size)
        # rank 0 only; tqdm's disable=None turns the bar off when stderr is not a terminal
        bar = tqdm(starts, desc="selectkit: embedding the pool", leave=False, disable=None if rank == 0 else True)
        with torch.no_grad():
            for start in bar:
                x = inputs(mine[start : start + batch_size]).to(device)
                chunks.append(module.embed(x).float().cpu())
        module.train(was_training)
        local = torch.cat(chunks) if chunks else torch.zeros(0, getattr(module, "embedding_dim", 1))
        if world == 1:
            return local.numpy()
        per = -(-ids.shape[0] // world)
        padded = torch.zeros(per, local.shape[1])
        padded[: local.shape[0]] = local
        padded = padded.to(device)
        gathered = [torch.zeros_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded)
        out = np.empty((ids.shape[0], local.shape[1]), dtype=np.float32)
        for r, block in enumerate(gathered):
            count = len(range(r, ids.shape[0], world))
            out[r::world] = block[:count].cpu().numpy()
        return out

    return embed
