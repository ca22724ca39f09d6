"""In-batch miners: ``(anchor, positive, negative)`` row triples from one training batch.

A miner sees a batch's embeddings and labels and returns three int64 index tensors into the batch's
rows. It runs under ``torch.no_grad`` and its output shape is checked (`InBatchMiner.__call__`).
Rows are usable when their mask is True and their label is ``>= 0``; a positive of an anchor is
another row of its label holding a different item (``ids`` tell repeated items apart), a negative any
usable row of another label. Distances are Euclidean between the embeddings as given (the
contrastive task hands L2-normalised ones, where they order pairs as cosine similarity does).

* `BatchHardMiner`: per anchor, its farthest positive and nearest negative ("In Defense of the
  Triplet Loss for Person Re-Identification").
* `SemiHardMiner`: per positive pair, the nearest negative farther than the positive but within the
  margin, ``d(a, p) < d(a, n) < d(a, p) + margin`` ("FaceNet: A Unified Embedding for Face
  Recognition and Clustering").

Used by `selectkit.tasks.Contrastive` through ``task.miner`` (a ``_target_``). Ties go to the lowest
row index; no randomness.
"""

from __future__ import annotations

import torch

from selectkit.errors import ConfigError

#: Elements of the largest ``[anchors, rows, rows]`` block `SemiHardMiner` allocates at once.
_BLOCK_ELEMENTS = 1 << 24


class InBatchMiner:
    """Base class of in-batch miners: ``miner(embeddings, labels, mask=None, ids=None) -> (a, p, n)``.

    ``embeddings`` ``[b, d]``, ``labels`` ``[b]`` int (``< 0``: unusable), ``mask`` ``[b]`` bool
    (False: padding), ``ids`` ``[b]`` the rows' dataset ids (default: the row numbers). Returns three
    int64 ``[m]`` tensors of row indices on the embeddings' device. ``last_stats`` holds the counts of
    the latest call (``rows``, ``anchors`` with a positive and a negative, ``triples``, and the
    miner's own).
    """

    def __init__(self) -> None:
        self.last_stats: dict[str, int] = {}

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if embeddings.ndim != 2:
            raise ConfigError(f"task.miner: embeddings must be [rows, dim], got shape {tuple(embeddings.shape)}")
        b = int(embeddings.shape[0])
        if labels.shape != (b,):
            raise ConfigError(f"task.miner: needs one label per row ({b}), got labels of shape {tuple(labels.shape)}")
        with torch.no_grad():
            z = embeddings.detach().float()
            if not bool(torch.isfinite(z).all()):
                raise ConfigError("task.miner: the batch's embeddings hold NaN or inf values")
            labels = labels.to(z.device)
            usable = labels >= 0
            if mask is not None:
                usable &= mask.to(device=z.device, dtype=torch.bool)
            ids = torch.arange(b, device=z.device) if ids is None else ids.to(z.device)
            same_label = labels[:, None] == labels[None, :]
            pair = usable[:, None] & usable[None, :]
            positive = pair & same_label & (ids[:, None] != ids[None, :])
            negative = pair & ~same_label
            dist = pairwise_distances(z)
            a, p, n = self.mine(dist, positive, negative)
        for name, t in (("anchors", a), ("positives", p), ("negatives", n)):
            assert t.dtype == torch.int64 and t.ndim == 1 and t.shape == a.shape, f"{type(self).__name__} returned {name} of shape {tuple(t.shape)}"
        self.last_stats = {"rows": b, "anchors": int((positive.any(1) & negative.any(1)).sum()), "triples": int(a.shape[0]), **self.last_stats}
        return a, p, n

    def mine(self, dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The triples, given ``dist`` ``[b, b]`` and the ``[b, b]`` masks of positive and negative pairs
        (``[i, j]``: row ``j`` for anchor row ``i``); subclasses may add counts to ``last_stats``."""
        raise NotImplementedError


def pairwise_distances(z: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[b, b]`` between the rows of ``z`` (difference-based, no cancellation)."""
    return torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")


class BatchHardMiner(InBatchMiner):
    """For every anchor row with a positive and a negative in the batch: its farthest positive and its
    nearest negative, one triple per anchor ("In Defense of the Triplet Loss for Person
    Re-Identification")."""

    def mine(self, dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.last_stats = {}
        anchors = torch.nonzero(positive.any(1) & negative.any(1)).flatten()
        d = dist[anchors]
        far = d.masked_fill(~positive[anchors], -1.0).argmax(dim=1)
        near = d.masked_fill(~negative[anchors], torch.inf).argmin(dim=1)
        return anchors, far, near

    def __repr__(self) -> str:
        return "BatchHardMiner()"


class SemiHardMiner(InBatchMiner):
    """For every positive pair ``(a, p)``: the nearest negative ``n`` with ``d(a, p) < d(a, n) <
    d(a, p) + margin`` ("FaceNet: A Unified Embedding for Face Recognition and Clustering").

    Pairs without such a negative are dropped and counted (``last_stats['pairs_without_semi_hard']``,
    next to ``pairs``). Work is done in blocks of anchors, at most ``2**24`` pair-negative cells at once.

    Args:
        margin: the window above the positive's distance, > 0 (use the triplet loss's margin).
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
            raise ConfigError(f"task.miner.margin must be a number > 0, got {margin!r}")
        self.margin = float(margin)

    def mine(self, dist: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = int(dist.shape[0])
        step = max(1, _BLOCK_ELEMENTS // max(b * b, 1))
        out_a, out_p, out_n = [], [], []
        pairs = 0
        for start in range(0, b, step):
            d = dist[start : start + step]
            pos, neg = positive[start : start + step], negative[start : start + step]
            d_ap = d[:, :, None]
            d_an = d[:, None, :]
            window = (d_an > d_ap) & (d_an < d_ap + self.margin) & neg[:, None, :] & pos[:, :, None]
            best = torch.where(window, d_an.expand_as(window), torch.full_like(window, torch.inf, dtype=d.dtype)).min(dim=2)
            found = torch.isfinite(best.values)
            a, p = torch.nonzero(found, as_tuple=True)
            out_a.append(a + start)
            out_p.append(p)
            out_n.append(best.indices[a, p])
            pairs += int(pos.sum())
        cat = lambda parts: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64, device=dist.device)  # noqa: E731
        a, p, n = cat(out_a), cat(out_p), cat(out_n)
        self.last_stats = {"pairs": pairs, "pairs_without_semi_hard": pairs - int(a.shape[0])}
        return a, p, n

    def __repr__(self) -> str:
        return f"SemiHardMiner(margin={self.margin})"

