"""A `Pipeline` chains selection stages; each stage selects from the output of the one before it.

Stage schedules:
    ``once``: run on the first selection and reuse the result while its input stays the same;
    ``epoch`` with ``every: n``: run at epochs 0, n, 2n, ... (and whenever its input changed).

The pipeline works in *global ids*: rows ``0..N-1`` of the training set, and ``N..N+S-1`` for the
synthetic samples stages have created. Weights compose multiplicatively along the chain. Stages that
create samples may only run before training starts (the training set cannot grow mid-run without
rebuilding the loader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Selection, Synthetic
from selectkit.selector import Pool, SelectContext, Selector

SCHEDULES = ("once", "epoch")


@dataclass
class Stage:
    """One step of a pipeline: a selector and when it runs."""

    selector: Selector
    schedule: str = "epoch"
    every: int = 1
    name: str = ""

    def check(self, path: str) -> None:
        """Validate the schedule; `ConfigError` names ``path``'s setting."""
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{path}.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"{path}.every must be an integer >= 1, got {self.every!r}")

    def fires(self, epoch: int) -> bool:
        """Whether the schedule asks for a fresh selection at ``epoch``."""
        return self.schedule == "epoch" and epoch % self.every == 0


@dataclass
class PipelineOutput:
    """The outcome of one pipeline run: global ids, weights and per-stage bookkeeping."""

    ids: np.ndarray
    weights: np.ndarray | None
    epoch: int
    ran: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Ordered stages plus the synthetic samples they created and each stage's last output."""

    def __init__(self, stages: Sequence[Stage], *, seed: int, config_path: str = "pipeline") -> None:
        self.stages = list(stages)
        self.seed = seed
        self.config_path = config_path
        self.synthetic: list[tuple[int, Synthetic, np.ndarray]] = []  # (stage, samples, global parent ids)
        self._cache: dict[int, dict[str, Any]] = {}
        self._started = False

    # ------------------------------------------------------------------ validation
    def check(self) -> None:
        """Validate every stage's schedule and parameters before any work starts."""
        if not self.stages:
            raise ConfigError(f"{self.config_path}.stages is empty; give at least one stage")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        for k, stage in enumerate(self.stages):
            path = f"{self.config_path}.stages.{k}" if len(self.stages) > 1 else self.config_path
            stage.check(path)
            stage.selector.check_params()
            if stage.selector.creates_samples and stage.schedule != "once":
                raise ConfigError(f"{path}.schedule must be 'once' for {stage.selector.name}, which creates samples")
            if stage.selector.creates_samples and any(s.schedule == "epoch" for s in self.stages[:k]):
                raise ConfigError(f"{path}: {stage.selector.name} creates samples and must come before every per-epoch stage")

    def requirements(self) -> set[str]:
        """The union of what the stages need, so the caller computes only that."""
        return set().union(*(s.selector.requires for s in self.stages))

    @property
    def num_synthetic(self) -> int:
        """How many synthetic samples the stages have created so far."""
        return sum(len(s) for _, s, _ in self.synthetic)

    @property
    def label(self) -> str:
        """A short human label such as ``smote>rs2``."""
        return ">".join(s.name or s.selector.name for s in self.stages)

    # ------------------------------------------------------------------ running
    def run(
        self,
        epoch: int,
        base_size: int,
        make_pool: Callable[[np.ndarray | int, np.ndarray | None], Pool],
    ) -> PipelineOutput:
        """Run the stages due at ``epoch`` and return the final selection in global ids."""
        ids: np.ndarray | None = None  # None: the whole base set 0..base_size-1, never materialised
        weights: np.ndarray | None = None
        changed = False
        ran: list[str] = []
        meta: dict[str, Any] = {}
        for k, stage in enumerate(self.stages):
            cached = self._cache.get(k)
            due = cached is None or changed or stage.fires(epoch)
            if not due:
                ids, weights = cached["ids"], cached["weights"]
                continue
            if stage.selector.creates_samples and self._started and cached is None:
                raise ConfigError(f"{self.config_path}.stages.{k}: stages that create samples must run before training starts")
            pool = make_pool(base_size if ids is None else ids, weights)
            ctx = SelectContext(seed=self.seed, epoch=epoch, stage=k)
            sel = stage.selector.select(pool, ctx)
            ids, weights = self._to_global(k, sel, ids, weights, base_size, len(pool))
            self._cache[k] = {"ids": ids, "weights": weights, "epoch": epoch}
            ran.append(stage.name or stage.selector.name)
            if sel.meta:
                meta[stage.name or f"{k}:{stage.selector.name}"] = sel.meta
            changed = True
        self._started = True
        if ids is None:
            ids = np.arange(base_size, dtype=np.int64)
        return PipelineOutput(ids=ids, weights=weights, epoch=epoch, ran=ran, meta=meta)

    def _to_global(
        self, k: int, sel: Selection, ids: np.ndarray | None, weights: np.ndarray | None, base_size: int, n: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        local = sel.indices
        if sel.num_synthetic == 0:
            out = local if ids is None else ids[local]
            kept = None if weights is None else weights[local]
        else:
            is_syn = local >= n
            out = np.empty_like(local)
            out[~is_syn] = local[~is_syn] if ids is None else ids[local[~is_syn]]
            start = base_size + self.num_synthetic
            out[is_syn] = start + (local[is_syn] - n)
            parents = sel.synthetic.parents if ids is None else ids[sel.synthetic.parents]
            self.synthetic.append((k, sel.synthetic, parents))
            kept = None
            if weights is not None:
                kept = np.ones(local.shape[0], dtype=np.float32)
                kept[~is_syn] = weights[local[~is_syn]]
        if kept is None and sel.weights is None:
            return out, None
        w = np.ones(local.shape[0], dtype=np.float32) if kept is None else kept.astype(np.float32, copy=False)
        if sel.weights is not None:
            w = w * sel.weights.astype(np.float32)
        return out, w

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Selector states, cached stage outputs and synthetic samples: all a resume needs."""
        return {
            "seed": self.seed,
            "selectors": [s.selector.state_dict() for s in self.stages],
            "cache": {k: dict(v) for k, v in self._cache.items()},
            "synthetic": [
                {
                    "stage": k,
                    "features": s.features,
                    "labels": s.labels,
                    "parents": s.parents,
                    "lam": s.lam,
                    "space": s.space,
                    "global_parents": gp,
                }
                for k, s, gp in self.synthetic
            ],
            "started": self._started,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict`; refuses a checkpoint made with another seed or other stages."""
        if state.get("seed") != self.seed:
            raise ConfigError(f"seed={self.seed} differs from the checkpoint's seed={state.get('seed')}; resume with the same seed")
        saved = state.get("selectors", [])
        if len(saved) != len(self.stages):
            raise ConfigError(f"{self.config_path} has {len(self.stages)} stages, the checkpoint {len(saved)}")
        for stage, sd in zip(self.stages, saved):
            stage.selector.load_state_dict(sd)
        self._cache = {int(k): dict(v) for k, v in state.get("cache", {}).items()}
        self.synthetic = [
            (
                int(d["stage"]),
                Synthetic(d["features"], d["labels"], d["parents"], d["lam"], d["space"]),
                d["global_parents"],
            )
            for d in state.get("synthetic", [])
        ]
        self._started = bool(state.get("started", False))
