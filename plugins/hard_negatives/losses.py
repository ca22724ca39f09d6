"""The label-aware hard-negative contrastive loss, a loss object for ``task.loss`` of
`selectkit.tasks.Contrastive`.

From "Contrastive Learning with Hard Negative Samples" (Robinson et al.), in the label-aware form of
"Multimodal Contrastive Learning with Hard Negative Sampling for Human Activity Recognition": the
negatives of an anchor ``a`` with positive ``p`` are drawn from ``q_beta(n) ∝ exp(beta * s(a, n))``
over items of other labels, so negatives close to the anchor weigh more, and ``beta`` (the
concentration) sets how much. With ``s`` the cosine similarity, ``t`` the temperature and ``Q``
negatives ``n_1..n_Q`` in the batch, the importance-weighted estimate is

    w_j = exp(beta * s(a, n_j)) / mean_k exp(beta * s(a, n_k))
    N   = sum_j w_j * exp(s(a, n_j) / t)
    loss = -log( exp(s(a, p) / t) / (exp(s(a, p) / t) + N) )

computed in log space. At ``beta = 0`` every weight is 1 and the loss is InfoNCE over the same
negatives. Labels are known here, so same-label items are left out of the negatives instead of being
corrected for (that paper's debiasing term is not needed). Robinson et al.'s reference code scales
``beta`` by ``1/t`` (it weighs by ``exp(beta * s / t)``): their ``beta`` is ``beta * t`` here.
"""

from __future__ import annotations

import math

import torch

from selectkit.errors import ConfigError


def _number(value: object, setting: str, rule: str, ok) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ConfigError(f"{setting} must be {rule}, got {value!r}")
    return float(value)


def distinct_rows(ids: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """``[R]`` bool: the first live row of each item id (later rows of the same item are repeats)."""
    key = ids.masked_fill(~live, -1)
    sorted_ids, order = torch.sort(key, stable=True)
    first = torch.ones_like(live)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    out = torch.zeros_like(live)
    out[order] = first
    return out & live


class HardNegativeContrastiveLoss:
    """Label-aware hard-negative contrastive loss over a batch of tuples (see the module docstring).

    Called by the contrastive task as ``loss(z, ids, labels, live) -> (losses [T], valid [T])`` with
    ``z`` the L2-normalised ``[T, s, d]`` tuple embeddings (anchor, positive, negatives), ``ids`` and
    ``labels`` ``[T, s]``, ``live`` ``[T]``. The negatives of tuple ``i`` are the batch's distinct live
    items (every row of every tuple, repeats of an item counted once) other than its anchor and
    positive and, with ``label_aware``, of another label than its anchor. A tuple without any negative
    is not valid (masked out like padding).

    Args:
        beta: concentration, >= 0 (0: plain InfoNCE over the same negatives).
        temperature: softmax temperature, > 0.
        label_aware: leave same-label items out of the negatives (needs labels); false keeps every
            other item, as in unsupervised contrastive learning.
    """

    def __init__(self, beta: float = 1.0, temperature: float = 0.1, label_aware: bool = True) -> None:
        self.beta = _number(beta, "task.loss.beta", "a number >= 0", lambda v: v >= 0 and math.isfinite(v))
        self.temperature = _number(temperature, "task.loss.temperature", "a number > 0", lambda v: v > 0)
        if not isinstance(label_aware, bool):
            raise ConfigError(f"task.loss.label_aware must be true or false, got {label_aware!r}")
        self.label_aware = label_aware

    def negatives(self, ids: torch.Tensor, labels: torch.Tensor | None, live: torch.Tensor) -> torch.Tensor:
        """``[T, T*s]`` bool: row ``r`` of the flattened batch is a negative of tuple ``i``."""
        t, s = ids.shape
        row_live = live.repeat_interleave(s)
        flat = ids.reshape(-1)
        cand = distinct_rows(flat, row_live)[None, :] & live[:, None]
        cand = cand & (flat[None, :] != ids[:, :1]) & (flat[None, :] != ids[:, 1:2])
        if self.label_aware:
            if labels is None or bool((labels.reshape(-1)[row_live] < 0).any()):
                raise ConfigError("task.loss.label_aware=true needs a label on every training row; set it to false for unlabelled data")
            cand = cand & (labels.reshape(-1)[None, :] != labels[:, :1])
        return cand

    def __call__(self, z: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor | None, live: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.ndim != 3 or z.shape[1] < 2:
            raise ConfigError(f"task.loss: tuples must be [tuples, items >= 2, dim], got shape {tuple(z.shape)}")
        t, s, d = z.shape
        live = live.to(torch.bool)
        cand = self.negatives(ids, labels, live)
        count = cand.sum(dim=1)
        valid = live & (count > 0)
        # a tuple without negatives gets one dummy candidate, so its (unused) value stays finite
        safe = cand.clone()
        safe[~valid, 0] = True
        a = z[:, 0]
        pos = (a * z[:, 1]).sum(-1) / self.temperature
        sim = a @ z.reshape(t * s, d).T
        log_w = (self.beta * sim).masked_fill(~safe, -math.inf)
        log_n = torch.logsumexp(log_w + sim / self.temperature, dim=1) - torch.logsumexp(log_w, dim=1)
        log_n = log_n + torch.log(safe.sum(dim=1).to(sim.dtype))
        loss = torch.logaddexp(pos, log_n) - pos
        return torch.where(valid, loss, torch.zeros_like(loss)), valid

    def __repr__(self) -> str:
        return f"HardNegativeContrastiveLoss(beta={self.beta}, temperature={self.temperature}, label_aware={self.label_aware})"
