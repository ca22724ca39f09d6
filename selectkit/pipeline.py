"""A `Pipeline` chains selection stages; each stage selects from the output of the one before it.

Stage schedules:
    ``once``: run on the first selection and reuse the result while its input stays the same;
    ``epoch`` with ``every: n``: run at epochs 0, n, 2n, ... (and whenever its input changed).
``start_epoch: s`` delays a stage: before epoch ``s`` it passes its input through unchanged; from ``s``
on it runs by its schedule, counted from ``s`` (``once``: at ``s``; ``every: n``: at ``s, s+n, ...``).

The pipeline works in *global ids*: rows ``0..N-1`` of the training set, and ``N..N+S-1`` for the
synthetic samples stages have created. Weights compose multiplicatively along the chain. Every stage but
the last returns a `Selection`; the last may return a `Selection` (what to train on), `Tuples` (what a
contrastive task trains on) or an `Acquisition` (what to label next, in a round loop). Stages that
create samples come before every per-epoch stage; they may start late (``start_epoch``, e.g. to
interpolate a trained model's embeddings) and refresh (``schedule: epoch``, ``every``): each run replaces
the samples that stage (and the stages after it) made before, and `Pipeline.training_set_version`
changes, so the training loader is rebuilt at that epoch and only then. Errors name a stage by its YAML
key (``pipeline.stages.<key>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Acquisition, Selection, Synthetic, Tuples
from selectkit.selector import Pool, SelectContext, Selector

SCHEDULES = ("once", "epoch")


@dataclass
class Stage:
    """One step of a pipeline: a selector, when it runs, and its YAML key (``name``)."""

    selector: Selector
    schedule: str | None = None
    every: int = 1
    name: str = ""
    start_epoch: int = 0

    def __post_init__(self) -> None:
        if self.schedule is None:
            self.schedule = getattr(self.selector, "default_schedule", "epoch")

    @property
    def label(self) -> str:
        """The stage's YAML key, or its selector's name when it has none."""
        return self.name or self.selector.name

    def check(self, path: str) -> None:
        """Validate the schedule; `ConfigError` names ``path``'s setting."""
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{path}.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"{path}.every must be an integer >= 1, got {self.every!r}")
        if isinstance(self.start_epoch, bool) or not isinstance(self.start_epoch, int) or self.start_epoch < 0:
            raise ConfigError(f"{path}.start_epoch must be an integer >= 0, got {self.start_epoch!r}")

    def active(self, epoch: int) -> bool:
        """Whether the stage takes part at ``epoch`` (before ``start_epoch`` it passes its input through)."""
        return epoch >= self.start_epoch

    def fires(self, epoch: int) -> bool:
        """Whether the schedule asks for a fresh selection at ``epoch``."""
        return self.schedule == "epoch" and epoch >= self.start_epoch and (epoch - self.start_epoch) % self.every == 0


@dataclass
class PipelineOutput:
    """The outcome of one pipeline run, in global ids.

    ``kind`` is the last stage's result kind: ``selection`` (``ids``, ``weights``), ``tuples``
    (``tuples``: ``[t, s]`` ids, anchor first; ``scores`` holds ``positive_scores`` and
    ``negative_scores`` when given) or ``acquisition`` (``ids``; ``scores`` holds ``scores``). The
    ``scores`` keys are the names the manifest stores them under.
    ``meta`` maps each stage that ran to its result's metadata.
    """

    kind: str
    ids: np.ndarray
    weights: np.ndarray | None
    epoch: int
    ran: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    tuples: np.ndarray | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)


class Pipeline:
    """Ordered stages plus the synthetic samples they created and each stage's last output."""

    def __init__(self, stages: Sequence[Stage], *, seed: int, config_path: str = "pipeline") -> None:
        self.stages = list(stages)
        self.seed = seed
        self.config_path = config_path
        self.synthetic: list[tuple[int, Synthetic, np.ndarray]] = []  # (stage, samples, global parent ids)
        self._cache: dict[int, dict[str, Any]] = {}
        self._started = False
        self._version = 0

    # ------------------------------------------------------------------ validation
    def path(self, k: int) -> str:
        """The config path of stage ``k``: ``pipeline.stages.<key>``, or ``selector`` for a lone selector."""
        stage = self.stages[k]
        if self.config_path != "pipeline":
            return self.config_path
        return f"pipeline.stages.{stage.name}" if stage.name else f"pipeline.stages.{k}"

    def check(self) -> None:
        """Validate every stage's schedule, parameters and result kind before any work starts."""
        if not self.stages:
            raise ConfigError(f"{self.config_path}.stages is empty; give at least one stage")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        last = len(self.stages) - 1
        for k, stage in enumerate(self.stages):
            path = self.path(k)
            stage.check(path)
            stage.selector.check_params()
            returns = getattr(stage.selector, "returns", Selection)
            if k < last and returns is not Selection:
                raise ConfigError(f"{path}: {stage.selector.name} returns {returns.__name__}, so it must be the last stage")
            if stage.start_epoch > 0 and returns is not Selection:
                raise ConfigError(f"{path}.start_epoch: {stage.selector.name} returns {returns.__name__}, which has nothing to pass through before it starts; remove start_epoch")
            if stage.selector.creates_samples and any(s.schedule == "epoch" for s in self.stages[:k]):
                raise ConfigError(f"{path}: {stage.selector.name} creates samples and must come before every per-epoch stage")

    @property
    def returns(self) -> type:
        """The result kind of the last stage."""
        return getattr(self.stages[-1].selector, "returns", Selection)

    def requirements(self) -> set[str]:
        """The names of the providers the stages need, so the caller computes only those."""
        return set().union(*(set(s.selector.requirements()) for s in self.stages))

    @property
    def started(self) -> bool:
        """Whether the pipeline has run (in this process or before a checkpoint it was restored from)."""
        return self._started

    @property
    def changes_training_set(self) -> bool:
        """Whether a stage creates samples after the first epoch (the loader is then rebuilt when they change)."""
        return any(s.selector.creates_samples and (s.start_epoch > 0 or s.schedule == "epoch") for s in self.stages)

    @property
    def training_set_version(self) -> int:
        """A counter that changes whenever the synthetic samples change (created, replaced or restored)."""
        return self._version

    @property
    def num_synthetic(self) -> int:
        """How many synthetic samples the stages have created so far."""
        return sum(len(s) for _, s, _ in self.synthetic)

    @property
    def label(self) -> str:
        """A short human label such as ``smote>rs2``."""
        return ">".join(s.label for s in self.stages)

    def hooks(self, base_size: int) -> list[Any]:
        """The training hooks of the stages (in stage order), with the synthetic blocks each created."""
        out = []
        start = base_size
        blocks: dict[int, list] = {}
        for k, syn, parents in self.synthetic:
            blocks.setdefault(k, []).append((syn, parents, start))
            start += len(syn)
        for k, stage in enumerate(self.stages):
            hook = stage.selector.training_hook()
            if hook is not None:
                hook.stage = stage.label
                hook.blocks = blocks.get(k, [])
                hook.seed = int(self.seed)
                out.append(hook)
        return out

    # ------------------------------------------------------------------ running
    def run(
        self,
        epoch: int,
        base: int | np.ndarray,
        make_pool: Callable[[np.ndarray | int, np.ndarray | None], Pool],
        *,
        rows: int | None = None,
        round: int = 0,
    ) -> PipelineOutput:
        """Run the stages due at ``epoch`` over ``base`` (``N``: ids ``0..N-1``; or an id array) and
        return the final result in global ids. ``rows`` is the training set's row count (synthetic ids
        follow it); it defaults to ``base`` when that is a count."""
        base_size = int(base) if isinstance(base, (int, np.integer)) else None
        ids: np.ndarray | None = None if base_size is not None else np.asarray(base, dtype=np.int64)
        n_rows = int(rows) if rows is not None else (base_size if base_size is not None else 0)
        weights: np.ndarray | None = None
        changed = False
        ran: list[str] = []
        meta: dict[str, Any] = {}
        final: Any = None
        for k, stage in enumerate(self.stages):
            if not stage.active(epoch):
                continue
            cached = self._cache.get(k)
            due = cached is None or changed or stage.fires(epoch)
            if not due:
                ids, weights, final = cached["ids"], cached["weights"], cached.get("final")
                continue
            if stage.selector.creates_samples:
                self._drop_synthetic(k)
            pool = make_pool(base_size if ids is None else ids, weights)
            ctx = SelectContext(seed=self.seed, epoch=epoch, stage=k, round=round)
            result = stage.selector.select(pool, ctx)
            final = None
            if isinstance(result, Selection):
                ids, weights = self._to_global(k, result, ids, weights, n_rows, len(pool))
            else:
                final = self._final_to_global(result, ids)
            self._cache[k] = {"ids": ids, "weights": weights, "epoch": epoch, "final": final}
            ran.append(stage.label)
            if result.meta:
                meta[stage.label] = _jsonable(result.meta)
            changed = True
        self._started = True
        if ids is None:
            ids = np.arange(base_size, dtype=np.int64)
        if final is None:
            return PipelineOutput("selection", ids, weights, epoch, ran, meta)
        kind, arrays = final
        if kind == "tuples":
            return PipelineOutput("tuples", arrays["items"][:, 0], None, epoch, ran, meta, tuples=arrays["items"], scores=arrays["scores"])
        return PipelineOutput("acquisition", arrays["ids"], None, epoch, ran, meta, scores=arrays["scores"])

    def _drop_synthetic(self, k: int) -> None:
        """Forget the samples of stage ``k`` and of the stages after it (they are about to be re-made)."""
        kept = [entry for entry in self.synthetic if entry[0] < k]
        if len(kept) != len(self.synthetic):
            self.synthetic = kept
            self._version += 1

    @staticmethod
    def _final_to_global(result: Any, ids: np.ndarray | None) -> tuple[str, dict[str, Any]]:
        def g(local: np.ndarray) -> np.ndarray:
            return local if ids is None else ids[local]

        if isinstance(result, Tuples):
            scores = {k: v for k, v in (("positive_scores", result.positive_scores), ("negative_scores", result.negative_scores)) if v is not None}
            return "tuples", {"items": g(result.items()), "scores": scores}
        if isinstance(result, Acquisition):
            return "acquisition", {"ids": g(result.indices), "scores": {} if result.scores is None else {"scores": result.scores}}
        raise ConfigError(f"pipeline: unknown result kind {type(result).__name__}")

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
            self._version += 1
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
            "version": self._version,
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
        self._version = int(state.get("version", len(self.synthetic))) + 1


def _jsonable(value: Any) -> Any:
    """Selector metadata as plain JSON types (numpy scalars and small arrays to Python values)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else f"<array {value.shape} {value.dtype}>"
    if isinstance(value, np.generic):
        return value.item()
    return value
