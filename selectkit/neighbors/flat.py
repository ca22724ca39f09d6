"""Exact search on CPU: blocked GEMM tiles with a grouped top-k filter (no FAISS call, no N x N matrix).

Each tile holds the scores of one query block against one base block, computed by a single matrix
product (``q . x`` for inner products, ``q . x - |x|^2 / 2`` for L2, which ranks like ``-|q - x|^2``).
The tile's columns are split into ``g`` strided groups; the ``k`` groups with the largest maxima
contain the tile's top ``k`` (any point outside them is beaten by ``k`` group maxima), so only
``k * g`` candidates go through the exact top-k, which is then merged into the running ``[nq, k]``
result.
"""

from __future__ import annotations

import numpy as np

from selectkit.neighbors.memory import Blocks


class FlatEngine:
    """Exact maximum-score search over a fixed float32 base, block by block, with torch kernels."""

    def __init__(self, base: np.ndarray, l2: bool) -> None:
        """``base``: float32 C-contiguous ``[n, d]`` (kept by reference); ``l2`` ranks by Euclidean distance."""
        import torch

        self.base = torch.from_numpy(base)
        self.l2 = l2
        self.half_sq_norms = (self.base * self.base).sum(1).mul_(0.5) if l2 else None

    def search(self, queries: np.ndarray, k: int, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
        """Scores (largest first) and indices ``[nq, k]``; for L2 the score is ``q . x - |x|^2 / 2``."""
        import torch

        q_all = torch.from_numpy(queries)
        nq, n = q_all.shape[0], self.base.shape[0]
        scores = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        bq, bb, g = min(blocks.query, nq), min(blocks.base, n), blocks.group
        tile = torch.empty((bq, bb), dtype=torch.float32)
        stride = bb // g if g > 1 else bb
        group_max = torch.empty((bq, stride), dtype=torch.float32)
        offsets = torch.arange(g, dtype=torch.int64) * stride
        with torch.inference_mode():
            for i in range(0, nq, bq):
                q = q_all[i : i + bq]
                m = q.shape[0]
                best = torch.full((m, k), -torch.inf, dtype=torch.float32)
                best_idx = torch.full((m, k), -1, dtype=torch.int64)
                for j in range(0, n, bb):
                    w = min(bb, n - j)
                    t = tile[:m, :w]
                    torch.mm(q, self.base[j : j + w].T, out=t)
                    if self.l2:
                        t.sub_(self.half_sq_norms[j : j + w])
                    if g > 1 and w == bb:
                        gm = group_max[:m]
                        torch.amax(t.view(m, g, stride), dim=1, out=gm)
                        top_groups = torch.topk(gm, k, dim=1, sorted=False).indices
                        cand = (top_groups.unsqueeze(-1) + offsets).view(m, -1)
                        cand_scores = torch.gather(t, 1, cand)
                    else:
                        cand_scores, cand = torch.topk(t, min(k, w), dim=1, sorted=False)
                    merged = torch.cat([best, cand_scores], 1)
                    merged_idx = torch.cat([best_idx, cand + j], 1)
                    best, pick = torch.topk(merged, k, dim=1, sorted=True)
                    best_idx = torch.gather(merged_idx, 1, pick)
                scores[i : i + m] = best.numpy()
                indices[i : i + m] = best_idx.numpy()
        return scores, indices
