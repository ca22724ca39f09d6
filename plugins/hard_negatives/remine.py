"""Hard negatives re-mined every n training steps: the hard_negatives family's `TrainingHook`.

`StepRemining` keeps a snapshot of the corpus (and of the anchors and positives) embedded with the
*current* network, in eval mode and without gradients, and refreshes it at the first training step of
every epoch and then every ``remine_every_steps`` steps of the epoch (steps are the epoch's training
batches, counted from 0). Each training batch's negatives are then mined again against the latest
snapshot with the same `selectkit_plugins.hard_negatives.mining.mine` call and settings as the
selector's (every exclusion and filter, the rank window, top or random sampling, ``on_short``), and
the batch's negative rows (ids and inputs, gathered from the training set) are swapped for the new
ones; anchors and positives, and the order of the tuples, stay as the epoch's selection made them.

* Random draws come from a seed of (pipeline seed, epoch, step), never rank.
* Because refreshes restart at every epoch's first step, a run resumed at an epoch boundary rebuilds
  exactly the snapshots the uninterrupted run had: nothing beyond the selector's state (which holds
  the mining plan) and the model is needed.
* The snapshot is embedded by `selectkit.providers.PoolScorer` (the ``embeddings`` provider's pass),
  without a progress bar, with in-model randomness seeded by (pipeline seed, epoch). Under DDP each
  rank embeds a contiguous share of the items and the shares are all-gathered (`selectkit.distributed.Comm`,
  the only code that calls torch.distributed), so every rank holds the same snapshot; each epoch's
  summary (counts summed over the ranks by the same `Comm`) says whether the ranks' snapshots agreed.
* The snapshot lives in the main process (batches are rewritten in the training step), so loader
  workers, which only gather the selection's batches, are safe.

`StepRemining.epoch_summary` goes in the epoch's row of ``metrics.jsonl`` (``hooks.<stage>``): per
refresh the step, the live tuples re-mined until the next refresh, those whose negatives differ from
the epoch's selection, and the short and padded ones, summed over ranks.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selectkit.distributed import Comm
from selectkit.errors import ConfigError, SelectionError
from selectkit.hooks import TrainingHook
from selectkit.providers import PoolScorer, embed_batch
from selectkit_plugins.hard_negatives.mining import Mined, check_vectors, mine, neighbor_config, scores_of

#: salt of the per-step seed of the random draws
_STEP_DRAWS = 0x5344
#: rows per forward pass of a snapshot
EMBED_BATCH = 1024


@dataclass
class Snapshot:
    """The corpus, anchors and positives embedded at one refresh.

    Attributes:
        items: sorted global ids embedded.
        vectors: float32 ``[len(items), d]`` their embeddings.
        corpus_vectors: the rows of ``vectors`` of the plan's corpus, in corpus order.
        index: the `selectkit.neighbors.NeighborIndex` over ``corpus_vectors``.
        config: the `selectkit.neighbors.NeighborConfig` it was built with.
        digest: a short hash of ``vectors`` (equal snapshots, equal digests).
    """

    items: np.ndarray
    vectors: np.ndarray
    corpus_vectors: np.ndarray
    index: Any
    config: Any
    digest: str

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The embeddings of global ``ids`` (which the snapshot holds)."""
        return self.vectors[np.searchsorted(self.items, ids)]


class StepRemining(TrainingHook):
    """Re-mines every training batch's negatives against a snapshot refreshed every n steps.

    Args:
        selector: the `selectkit_plugins.hard_negatives.HardNegatives` whose settings and mining plan
            (`HardNegatives.plan`, refreshed whenever the stage runs) are used.
    """

    def __init__(self, selector: Any) -> None:
        super().__init__()
        self.selector = selector
        self.every = int(selector.remine_every_steps)
        self.dataset: Any = None
        self.snapshot: Snapshot | None = None
        self._epoch = -1
        self._log: list[list[int]] = []
        self._digests: list[str] = []

    @property
    def setting(self) -> str:
        return f"{self.selector.config_path}.remine_every_steps"

    def wrap_dataset(self, dataset: Any) -> Any:
        self.dataset = dataset
        return dataset

    def step_seed(self, epoch: int, step: int) -> int:
        """The seed of the random draws of ``step`` of ``epoch``."""
        return int(np.random.default_rng([self.seed, int(epoch), int(step), _STEP_DRAWS]).integers(2**62))

    # ------------------------------------------------------------------ snapshots
    def refresh(self, module: Any) -> Snapshot:
        """Embed the plan's anchors, positives and corpus with the current network and index the corpus."""
        from selectkit.neighbors import NeighborIndex

        plan = self.selector.plan
        if not plan or self.dataset is None:
            raise SelectionError(f"{self.setting}: no mining plan or training set yet (the selector has not run, or the hook was not given the training set)")
        items = np.unique(np.concatenate([plan["anchors"], plan["positives"], plan["corpus"]])).astype(np.int64)
        # no memory cap: the items are a subset of the pool whose embeddings the selector already
        # computed under providers.memory_cap_gb
        scorer = PoolScorer(module.adapter, self.dataset, batch_size=EMBED_BATCH, device=module.device, memory_cap_gb=math.inf, seed=self.seed, progress=False)
        scorer.epoch = int(module.current_epoch)
        vectors = check_vectors(self._embedded(scorer, items), "embeddings", f"{self.selector.config_path}.space")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        corpus_vectors = np.ascontiguousarray(vectors[np.searchsorted(items, plan["corpus"])])
        config = neighbor_config(self.selector.neighbors, self.selector.metric, self.selector.config_path)
        index = NeighborIndex(config=config).fit(corpus_vectors)
        digest = hashlib.sha1(vectors.tobytes()).hexdigest()[:16]
        return Snapshot(items, vectors, corpus_vectors, index, config, digest)

    @staticmethod
    def _embedded(scorer: PoolScorer, items: np.ndarray) -> np.ndarray:
        """The embeddings of ``items``, the same on every rank: every rank refreshes at the same step,
        embeds its contiguous share of the items, and the shares are all-gathered in rank order."""
        comm = Comm()
        lo, hi = items.size * comm.rank // comm.world, items.size * (comm.rank + 1) // comm.world
        part = scorer.score(items[lo:hi], embed_batch, "embeddings") if hi > lo else None
        shapes = comm.all_gather_objects(None if part is None else (part.shape[1:], part.dtype.str), "hard negatives: snapshot shapes")
        shape, dtype = next((s for s in shapes if s is not None), ((1,), "<f4"))
        if part is None:
            part = np.zeros((0, *shape), dtype=dtype)
        return np.concatenate(comm.all_gather(part, "hard negatives: snapshot"))

    # ------------------------------------------------------------------ batches
    def prepare_batch(self, module: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        epoch = int(module.current_epoch)
        if epoch != self._epoch:
            self._epoch, self._log, self._digests, self.snapshot = epoch, [], [], None
        if self.snapshot is None or batch_idx % self.every == 0:
            self.snapshot = self.refresh(module)
            self._digests.append(self.snapshot.digest)
            self._log.append([int(batch_idx), 0, 0, 0, 0])
        out, counts = self.remine(batch, self.step_seed(epoch, batch_idx), where=f"epoch {epoch}, step {batch_idx}")
        for j, c in enumerate(counts):
            self._log[-1][1 + j] += c
        return out

    def mine_tuples(self, anchors: np.ndarray, positives: np.ndarray, seed: int) -> Mined:
        """`mine` for tuples ``(anchors[i], positives[i])`` (global ids) against the current snapshot:
        exactly the selector's call, with the plan's positives of each anchor excluded and the margins
        referring to the lowest of their scores."""
        sel, plan, snap = self.selector, self.selector.plan, self.snapshot
        assert snap is not None
        order = np.argsort(plan["anchors"], kind="stable")
        known = plan["anchors"][order]
        at = np.minimum(np.searchsorted(known, anchors), max(known.size - 1, 0))
        if known.size == 0 or not np.array_equal(known[at], anchors):
            missing = anchors[known[at] != anchors] if known.size else anchors
            raise SelectionError(f"{self.setting}: a batch's anchor {int(missing[0])} is not one the selector mined for")
        j = order[at]
        m = anchors.shape[0]
        starts, counts = plan["ptr"][j], plan["ptr"][j + 1] - plan["ptr"][j]
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        owner = np.concatenate([np.repeat(np.arange(m), counts), np.arange(m)])
        items = np.concatenate([plan["positives"][np.repeat(starts, counts) + offsets], positives])
        n = len(self.dataset)
        keys = np.unique(owner.astype(np.int64) * n + items)
        scores = scores_of(sel.metric, snap.rows(anchors[owner]), snap.rows(items))
        reference = np.full(m, np.inf, dtype=np.float32)
        np.minimum.at(reference, owner, scores)
        same = bool(plan["same_label"])
        return mine(
            snap.rows(anchors), snap.corpus_vectors, anchor_items=anchors, corpus_items=plan["corpus"], reference=reference,
            positive_keys=keys, n_items=n, settings=sel.settings(), seed=seed, config=snap.config,
            anchor_labels=plan["anchor_labels"][j] if same else None, corpus_labels=plan["corpus_labels"] if same else None,
            setting=sel.config_path, index=snap.index,
        )

    def remine(self, batch: dict[str, torch.Tensor], seed: int, where: str = "") -> tuple[dict[str, torch.Tensor], tuple[int, int, int, int]]:
        """``batch`` with the negatives of its live tuples re-mined, and the counts ``(tuples, changed,
        short, padded)``. Short tuples keep their negatives and are masked out (``on_short=skip``),
        are padded (``pad``), or stop training (``error``)."""
        sel = self.selector
        k = int(sel.negatives)
        s = k + 2
        ids = batch["index"]
        rows = int(ids.shape[0])
        if rows % s:
            raise SelectionError(f"{self.setting}: a training batch of {rows} rows does not hold whole tuples of {s} items")
        tuples = ids.view(rows // s, s).cpu().numpy().astype(np.int64)
        live = batch["mask"].view(rows // s, s)[:, 0].cpu().numpy().astype(bool)
        pick = np.flatnonzero(live)
        if pick.size == 0:
            return batch, (0, 0, 0, 0)
        old = tuples[pick, 2:]
        result = self.mine_tuples(tuples[pick, 0], tuples[pick, 1], seed)
        short = result.short
        if short.any() and sel.on_short == "error":
            raise ConfigError(
                f"{sel.config_path}.on_short=error: re-mining at {where}: {int(short.sum())} of {pick.size} tuples kept fewer than "
                f"negatives={k} candidates after the filters (fewest {int(result.found.min())}); relax the filters, raise max_depth, "
                f"or set on_short to skip or pad"
            )
        kept = short if sel.on_short == "skip" else np.zeros(pick.size, dtype=bool)
        new = np.where(kept[:, None], old, result.negatives)
        changed = (np.sort(new, axis=1) != np.sort(old, axis=1)).any(axis=1)
        out = dict(batch)
        moved = new != old
        if moved.any():
            full = tuples.copy()
            full[pick, 2:] = new
            positions = (pick[:, None] * s + 2 + np.arange(k))[moved]
            flat = full.reshape(-1)
            gathered = self.dataset.gather(torch.from_numpy(flat[positions]))
            for key, value in gathered.items():
                target = batch.get(key)
                if key in ("index", "weight", "mask") or not isinstance(target, torch.Tensor) or target.shape[0] != rows:
                    continue
                target = target.clone()
                target[torch.from_numpy(positions).to(target.device)] = value.to(target.device, target.dtype)
                out[key] = target
            out["index"] = torch.from_numpy(flat).to(ids.device, ids.dtype)
        if kept.any():
            mask = batch["mask"].clone()
            mask.view(rows // s, s)[torch.from_numpy(pick[kept]).to(mask.device)] = False
            out["mask"] = mask
        return out, (int(pick.size), int(changed.sum()), int(short.sum()), int(result.padded.sum()))

    # ------------------------------------------------------------------ records
    def epoch_summary(self, module: Any) -> dict[str, Any]:
        if not self._log:
            return {}
        comm = Comm()
        counts = comm.all_sum(np.array([r[1:] for r in self._log], dtype=np.int64))
        agree = all(d == self._digests for d in comm.all_gather_objects(self._digests, "hard negatives: snapshot digests"))
        table = counts.tolist()
        total = counts.sum(axis=0).tolist()
        return {
            "remine_every_steps": self.every,
            "refreshes": len(self._log),
            "refresh_steps": [r[0] for r in self._log],
            "tuples": int(total[0]),
            "changed": int(total[1]),
            "changed_share": round(total[1] / total[0], 6) if total[0] else 0.0,
            "short": int(total[2]),
            "padded": int(total[3]),
            "per_refresh": [{"step": r[0], "tuples": c[0], "changed": c[1], "short": c[2], "padded": c[3]} for r, c in zip(self._log, table)],
            "snapshots": list(self._digests),
            "ranks_agree": bool(agree),
        }
