"""Active-learning benchmark parts: the Fashion-MNIST pool as arrays, one round-loop run per strategy
and seed, and pool-scoring throughput against a plain inference loop on the same batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: acquisition strategies: name -> overrides of rounds.acquire (and of the initial set)
STRATEGIES: dict[str, list[str]] = {
    "random": ["rounds.acquire.name=random"],
    "least_confidence": ["rounds.acquire.name=least_confidence"],
    "entropy": ["rounds.acquire.name=entropy"],
    "power_entropy": ["rounds.acquire.name=entropy", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=1.0"],
    "power_entropy_t05": ["rounds.acquire.name=entropy", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=0.5"],
    "power_entropy_t2": ["rounds.acquire.name=entropy", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=2.0"],
    "power_margin_t2": ["rounds.acquire.name=margin", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=2.0"],
    "power_margin": ["rounds.acquire.name=margin", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=1.0"],
    "softrank_entropy": ["rounds.acquire.name=entropy", "+rounds.acquire.stochastic=softrank", "+rounds.acquire.temperature=1.0"],
    "power_least_confidence": ["rounds.acquire.name=least_confidence", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=1.0"],
    "margin": ["rounds.acquire.name=margin"],
    "bald": ["rounds.acquire.name=bald", "+rounds.acquire.passes=10"],
    "power_bald": ["rounds.acquire.name=bald", "+rounds.acquire.passes=10", "+rounds.acquire.stochastic=power", "+rounds.acquire.temperature=1.0"],
    "kcenter": ["rounds.acquire.name=kcenter"],
    "badge": ["rounds.acquire.name=badge"],
    "typiclust": ["rounds.acquire.name=typiclust", "rounds.initial.select={name:typiclust}"],
    "typiclust_embeddings": ["rounds.acquire.name=typiclust", "+rounds.acquire.space=embeddings", "rounds.initial.select={name:typiclust}"],
}


def write_pool(out: Path, pool: int, seed: int = 0) -> tuple[Path, Path]:
    """``pool.npz`` (``pool`` training images drawn from ``seed``, or all 60,000 with ``pool=0``) and
    ``val.npz`` (the 10,000 test images), standardised with the training set's mean and std."""
    from selectkit.data.fashion import load_fashion_mnist

    out.mkdir(parents=True, exist_ok=True)
    train_path, val_path = out / f"pool_{pool or 60000}.npz", out / "val.npz"
    if train_path.exists() and val_path.exists():
        return train_path, val_path
    data = load_fashion_mnist(normalize=True)
    x, y = data["train"]
    if pool:
        ids = np.sort(np.random.default_rng([seed, 0x504F]).choice(x.shape[0], size=pool, replace=False))
        x, y = x[ids], y[ids]
    np.savez(train_path, x=x, y=y)
    np.savez(val_path, x=data["test"][0], y=data["test"][1])
    return train_path, val_path


def overrides(name: str, seed: int, train: Path, val: Path, epochs: int, schedule: list[int], total: int, initial: int, batch_size: int = 32, min_steps: int | None = 200) -> list[str]:
    """The ``selectkit-train`` overrides of one strategy's run."""
    return [
        "data=arrays", f"data.train={train}", f"data.val={val}", "data.mmap=false", f"data.batch_size={batch_size}",
        "model=mlp", "selector=full", "rounds=default", "logger=none", "checkpoint=false",
        "trainer.accelerator=cpu", "trainer.progress_bar=false", f"trainer.max_epochs={epochs}",
        f"trainer.check_val_every_n_epoch={epochs}", f"seed={seed}", f"run_name={name}",
        f"rounds.num_rounds={len(schedule)}", f"rounds.budget=[{','.join(str(b) for b in schedule)}]",
        f"rounds.total_budget={total}", f"rounds.initial.size={initial}", "rounds.initial.class_balanced=false",
        f"rounds.min_steps={'null' if not min_steps else min_steps}",
        *STRATEGIES[name],
    ]


def compose(out: Path, args: list[str]):
    """The composed ``train`` config with outputs under ``out``."""
    from hydra import compose as hydra_compose, initialize_config_module

    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return hydra_compose("train", overrides=[f"paths.output_dir={out}", *args])


def scoring_throughput(cfg: Any, repeats: int = 5, batch_size: int = 1024) -> dict[str, Any]:
    """Items per second of the ``probs`` provider (`selectkit.providers.PoolScorer`) and of a plain
    ``torch.no_grad`` loop over the same batches of the same pool with the same model, interleaved
    ``repeats`` times; medians."""
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.train import build_module, build_source

    source = build_source(cfg)
    module = build_module(cfg, source.meta)
    model = module.model.eval()
    ds = source.train
    ids = np.arange(len(ds), dtype=np.int64)
    scorer = PoolScorer(module.adapter, ds, batch_size=batch_size, device="cpu", seed=0)
    probs = model_providers(scorer, module.task)["probs"]

    def plain() -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, ids.shape[0], batch_size):
                batch = ds.gather(torch.from_numpy(ids[start : start + batch_size]))
                out.append(torch.softmax(model(batch["x"]), dim=1).float().cpu())
        return torch.cat(out).numpy()

    a, b = probs(ids), plain()
    times: dict[str, list[float]] = {"pool_scorer": [], "plain_loop": []}
    for _ in range(repeats):
        for key, fn in (("pool_scorer", lambda: probs(ids)), ("plain_loop", plain)):
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "items": int(ids.shape[0]),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "max_abs_diff": float(np.abs(a - b).max()),
        "pool_scorer_items_per_s": ids.shape[0] / med["pool_scorer"],
        "plain_loop_items_per_s": ids.shape[0] / med["plain_loop"],
        "ratio": med["plain_loop"] / med["pool_scorer"],
        "seconds": times,
    }
