"""Measurement helpers behind ``scripts/bench_sensitivity.py`` and ``scripts/bench_coresets.py``: a
briefly trained Fashion-MNIST model's per-sample losses and embeddings, and the relative error of
weighted-coreset loss estimates against the full-data mean loss over many seeds."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def fit_fmnist_mlp(epochs: int = 3, seed: int = 0, batch_size: int = 256, lr: float = 1e-3) -> dict[str, Any]:
    """selectkit's MLP trained briefly (plain Adam loop) on the Fashion-MNIST training split.

    Returns ``model``, the training tensors ``x``/``y``, the test accuracy ``val_acc`` and ``fit_s``.
    """
    from selectkit.data import build_datasets
    from selectkit.models import MLP

    train, val, meta = build_datasets(name="fashion_mnist", val_fraction=0.0, seed=seed, normalize=True)
    x, y = train.x.reshape(len(train), -1).float(), train.y.long()
    torch.manual_seed(seed)
    model = MLP(in_features=x.shape[1], num_classes=int(meta["num_classes"]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    fit_s = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        vx = val.x.reshape(len(val), -1).float()
        val_acc = float((model(vx).argmax(1) == val.y.long()).float().mean())
    return {"model": model, "x": x, "y": y, "val_acc": val_acc, "fit_s": fit_s}


def per_sample(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy losses ``[n]`` and penultimate embeddings ``[n, d]`` (float32)."""
    losses, embeddings = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            z = model.embed(x[start : start + batch_size])
            losses.append(F.cross_entropy(model.head(z), y[start : start + batch_size], reduction="none"))
            embeddings.append(z)
    return torch.cat(losses).numpy().astype(np.float32), torch.cat(embeddings).numpy().astype(np.float32)


def loss_estimates(
    embeddings: np.ndarray,
    losses: np.ndarray,
    *,
    eps: float,
    k: int,
    seeds: Sequence[int],
    variants: Mapping[str, Mapping[str, Any]],
    features: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Relative error ``|estimate - mean loss| / mean loss`` per seed of each sensitivity variant
    (selector settings) and of uniform sampling, all at ``k + ceil(1/eps^2)`` draws.

    Each variant runs the `SensitivitySampling` selector on a pool whose ``losses`` provider counts
    the items it is asked for (the model evaluations the method makes); the full loss array is the
    ground truth only. Uniform draws the same number of items i.i.d. (the same design as the coreset's).
    """
    from selectkit.selector import Pool, SelectContext
    from selectkit_plugins.sensitivity import SensitivitySampling

    n = losses.shape[0]
    truth = float(np.mean(losses, dtype=np.float64))
    m = int(k) + int(np.ceil(1.0 / eps**2 - 1e-9))
    out: dict[str, Any] = {"eps": eps, "k": k, "draws": m, "truth": truth, "variants": {}}
    for name, settings in variants.items():
        errors, evals, costs = [], [], []
        for seed in seeds:
            asked = [0]

            def provider(ids: np.ndarray) -> np.ndarray:
                asked[0] += int(np.asarray(ids).size)
                return losses[ids]

            providers = {"embeddings": lambda ids: embeddings[ids], "losses": provider}
            if features is not None:
                providers["features"] = lambda ids: features[ids]
            if labels is not None:
                providers["labels"] = lambda ids: labels[ids]
            sel = SensitivitySampling(**{"eps": eps, "k": k, "fraction": 0.1, **settings})
            start = time.perf_counter()
            res = sel.select(Pool(n, providers=providers), SelectContext(seed=int(seed)))
            total = time.perf_counter() - start
            estimate = float(np.mean(res.weights.astype(np.float64) * losses[res.indices]))
            errors.append(abs(estimate - truth) / truth)
            evals.append(asked[0])
            costs.append({key: res.meta[key] for key in ("embed_s", "cluster_s", "score_s", "sample_s")} | {"select_s": total})
        out["variants"][name] = _summary(errors, eps) | {
            "model_evals": float(np.mean(evals)),
            "cost_s": {key: float(np.mean([c[key] for c in costs])) for key in costs[0]},
        }
    errors = []
    for seed in seeds:
        idx = np.random.default_rng([int(seed), 0x554E]).integers(n, size=m)
        errors.append(abs(float(np.mean(losses[idx], dtype=np.float64)) - truth) / truth)
    out["variants"]["uniform"] = _summary(errors, eps) | {"model_evals": 0.0, "cost_s": {}}
    return out


def _summary(errors: Sequence[float], eps: float) -> dict[str, Any]:
    e = np.asarray(errors)
    return {
        "seeds": int(e.size),
        "within_eps": float(np.mean(e <= eps)),
        "median": float(np.median(e)),
        "p90": float(np.quantile(e, 0.9)),
        "max": float(e.max()),
    }
