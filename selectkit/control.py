"""`SelectionController`: runs the pipeline per epoch over a training set and keeps the books.

It owns the pipeline, offers each stage the providers it asks for (labels, raw features, and the model
outputs that `selectkit.providers` computes), times every selection, writes the selection manifest on
rank 0, and round-trips all of it through ``state_dict`` so a resumed run makes the same selections.

Manifest (``<run>/selections/``): ``epoch_NNNN.npz`` per selection, holding ``indices`` (and
``weights``) for a `Selection`, or ``tuples`` (``[t, s]`` ids, anchor first) and their scores for
`Tuples`; ``manifest.jsonl`` one line per selection: epoch, round, kind, size, the stages that ran,
the seconds it took and each stage's metadata; ``synthetic.npz`` the created samples with provenance
(the latest ones, when a stage re-makes its samples; each epoch's ids are in its ``epoch_NNNN.npz``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from selectkit.errors import ConfigError
from selectkit.io import atomic_savez, atomic_write_text, json_text
from selectkit.pipeline import Pipeline, PipelineOutput
from selectkit.providers import pairs_provider
from selectkit.selector import Pool

#: model outputs computed from the items' own labels: offered for labelled items only
LABEL_OUTPUTS = frozenset({"losses"})


class SelectionController:
    """Per-epoch selections of a `Pipeline` over a base training set.

    Args:
        pipeline: the stages to run.
        labels: int64 labels of the base training set ``[N]`` (``-1`` for items without a label), or
            None when the data has no labels.
        features: callable returning flattened raw inputs of given ids (``[n, d]`` float32).
        out_dir: where to write the manifest; ``None`` writes nothing.
        rank: process rank; only rank 0 writes files.
        base_ids: the ids the first stage selects from (default: every row); a round loop passes the
            labelled ids.
        rows: rows of the training set (default: ``len(labels)``).
        labelled_ids: the already labelled ids, offered to every stage as ``pool.labelled`` (a round
            loop's acquisition passes them; acquisition selectors such as k-center read it).
        pairs: given (anchor ids, positive ids) of the training set (its ``pairs()``), offered to the
            stages as the ``pairs`` provider; None when the data has none.
        comm: the ranks that select together (`selectkit.distributed.Comm`); each stage's pool is
            sharded over them (None: this process selects alone).
        block_rows: rows per logical block of the pools' shards (``distributed.block_rows``).
        memory_cap_gb: the largest array a stage may gather whole from shards (``providers.memory_cap_gb``).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        labels: np.ndarray | None,
        features: Callable[[np.ndarray], np.ndarray],
        *,
        out_dir: str | Path | None = None,
        rank: int = 0,
        base_ids: np.ndarray | None = None,
        rows: int | None = None,
        labelled_ids: np.ndarray | None = None,
        pairs: tuple[np.ndarray, np.ndarray] | None = None,
        comm: Any = None,
        block_rows: int | None = None,
        memory_cap_gb: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.comm = comm
        self.block_rows = block_rows
        self.memory_cap_gb = memory_cap_gb
        self.seed = pipeline.seed
        self.base_labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.base_size = int(rows if rows is not None else (0 if labels is None else self.base_labels.shape[0]))
        self.base_ids = None if base_ids is None else np.asarray(base_ids, dtype=np.int64)
        self.labelled_ids = None if labelled_ids is None else np.asarray(labelled_ids, dtype=np.int64)
        self._features = features
        self._pairs = None if pairs is None else pairs_provider(*pairs)
        self.model_outputs: dict[str, Callable[..., np.ndarray]] = {}
        #: called with the epoch before each selection (model-output providers seed from it)
        self.on_epoch: list[Callable[[int], None]] = []
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rank = rank
        self.round = 0
        self.select_s = 0.0
        self._current: PipelineOutput | None = None
        self._last_epoch = 0
        self._manifest_opened = False
        self._synthetic_written = -1
        self.random_order = bool(pipeline.stages[-1].selector.random_order) if pipeline.stages else False

    # ------------------------------------------------------------------ data for the stages
    def labels_of(self, ids: np.ndarray) -> np.ndarray:
        """Labels of global ids, synthetic ones included; `ConfigError` for unlabelled items."""
        if self.base_labels is None:
            raise ConfigError("data: this dataset has no labels, but a stage asks for them")
        out = np.empty(ids.shape[0], dtype=np.int64)
        base = ids < self.base_size
        out[base] = self.base_labels[ids[base]]
        if not base.all():
            out[~base] = self.synthetic_labels()[ids[~base] - self.base_size]
        if (out[base] < 0).any():
            raise ConfigError(f"labels: {int((out[base] < 0).sum())} of the {ids.shape[0]} items asked for are unlabelled; only labelled items have labels")
        return out

    def synthetic_labels(self) -> np.ndarray:
        """Labels of every synthetic sample, in global-id order."""
        parts = [s.labels for _, s, _ in self.pipeline.synthetic]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def features_of(self, ids: np.ndarray) -> np.ndarray:
        """Flattened features of global ids, synthetic samples created in input space included."""
        ids = np.asarray(ids, dtype=np.int64)
        base = ids < self.base_size
        if base.all():
            return self._features(ids)
        made = [s for _, s, _ in self.pipeline.synthetic]
        cached = getattr(self, "_syn_features", ([], None))
        if len(cached[0]) != len(made) or any(a is not b for a, b in zip(cached[0], made)):
            parts = [s.features.reshape(len(s), -1) for s in made]
            self._syn_features = (made, np.concatenate(parts).astype(np.float32, copy=False))
        syn = self._syn_features[1]
        out = np.empty((ids.shape[0], syn.shape[1]), dtype=np.float32)
        if base.any():
            out[base] = self._features(ids[base])
        out[~base] = syn[ids[~base] - self.base_size]
        return out

    def _outputs(self) -> dict[str, Callable[..., np.ndarray]]:
        """The model-output providers; those computed from the items' labels (`LABEL_OUTPUTS`) refuse
        unlabelled items (``-1``), whose true labels the dataset may still hold (a round loop)."""
        out = dict(self.model_outputs)
        if self.base_labels is None or not (self.base_labels < 0).any():
            return out
        for name in LABEL_OUTPUTS & set(out):
            out[name] = self._labelled_only(name, out[name])
        return out

    def _labelled_only(self, name: str, fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        def provider(ids: np.ndarray, **params: Any) -> np.ndarray:
            ids = np.asarray(ids, dtype=np.int64)
            hidden = int((self.base_labels[ids[ids < self.base_size]] < 0).sum())
            if hidden:
                raise ConfigError(
                    f"{name}: {hidden} of the {ids.shape[0]} items asked for are unlabelled; {name} would read labels "
                    "no oracle has revealed (in a round loop only pool.labelled has them)"
                )
            return fn(ids, **params)

        return provider

    def _make_pool(self, ids: np.ndarray | int, weights: np.ndarray | None) -> Pool:
        providers: dict[str, Callable[..., np.ndarray]] = {}
        if self.base_labels is not None:
            providers["labels"] = self.labels_of
        if isinstance(ids, int) or bool((ids < self.base_size).all()):
            providers["features"] = self._features
            providers.update(self._outputs())
        elif all(s.space == "input" for _, s, _ in self.pipeline.synthetic):
            providers["features"] = self.features_of
        if self._pairs is not None:
            providers["pairs"] = self._pairs
        labelled = None
        if self.labelled_ids is not None:
            shared = {k: v for k, v in providers.items() if k in ("labels", "features")} | self._outputs()
            labelled = Pool(self.labelled_ids, providers=shared)
        return Pool(ids, weights=weights, providers=providers, labelled=labelled, comm=self.comm, block_rows=self.block_rows, memory_cap_gb=self.memory_cap_gb)

    # ------------------------------------------------------------------ selections
    @property
    def last_epoch(self) -> int:
        """The epoch of the latest selection made or restored (0 before any)."""
        return self._last_epoch

    @property
    def has_selected(self) -> bool:
        """Whether a selection was made (or restored) in this process."""
        return self._current is not None

    def output(self, epoch: int) -> PipelineOutput:
        """The pipeline's result for ``epoch``; computed once per epoch."""
        if self._current is not None and self._current.epoch == epoch:
            return self._current
        for listener in self.on_epoch:
            listener(epoch)
        start = time.perf_counter()
        base = self.base_size if self.base_ids is None else self.base_ids
        out = self.pipeline.run(epoch, base, self._make_pool, rows=self.base_size, round=self.round)
        spent = time.perf_counter() - start
        self.select_s += spent
        self._current = out
        self._last_epoch = epoch
        self._write_manifest(out, spent)
        return out

    def selection(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The (global ids, weights) to train on at ``epoch``."""
        out = self.output(epoch)
        if out.kind != "selection":
            raise ConfigError(f"pipeline: the last stage returns {out.kind}, which this task cannot train on as a selection")
        return out.ids, out.weights

    def tuples(self, epoch: int) -> np.ndarray:
        """The ``[t, s]`` tuples of global ids to train on at ``epoch``."""
        out = self.output(epoch)
        if out.kind != "tuples":
            raise ConfigError(f"pipeline: the last stage returns {out.kind}, but task=contrastive trains on tuples (end the pipeline with a tuple miner)")
        return out.tuples

    def size(self, epoch: int) -> int:
        """Items (or tuples) selected at ``epoch``."""
        out = self.output(epoch)
        return int(out.tuples.shape[0] if out.kind == "tuples" else out.ids.shape[0])

    def _write_manifest(self, out: PipelineOutput, spent: float) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        folder = self.out_dir / "selections"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"epoch_{out.epoch:04d}" if self.round == 0 else f"round_{self.round:03d}_epoch_{out.epoch:04d}"
        if out.kind == "tuples":
            arrays = {"tuples": out.tuples.astype(np.int64, copy=False), **out.scores}
        else:
            arrays = {"indices": out.ids.astype(np.int64, copy=False)}
            if out.weights is not None:
                arrays["weights"] = out.weights.astype(np.float32, copy=False)
            arrays.update(out.scores)
        atomic_savez(folder / f"{stem}.npz", **arrays)
        if self.pipeline.synthetic and self._synthetic_written != self.pipeline.training_set_version:
            # written when the samples are made, and again whenever a stage re-makes them
            self._synthetic_written = self.pipeline.training_set_version
            syn = self.pipeline.synthetic
            atomic_savez(
                folder / "synthetic.npz",
                ids=np.arange(self.base_size, self.base_size + self.pipeline.num_synthetic, dtype=np.int64),
                labels=np.concatenate([s.labels for _, s, _ in syn]),
                parents=np.concatenate([gp for _, _, gp in syn]),
                lam=np.concatenate([s.lam for _, s, _ in syn]),
                features=np.concatenate([s.features.reshape(len(s), -1) for _, s, _ in syn]),
                stage=np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s, _ in syn]),
                space=np.array([s.space for _, s, _ in syn]),
            )
        line = {
            "epoch": out.epoch,
            "round": self.round,
            "kind": out.kind,
            "size": int(out.tuples.shape[0] if out.kind == "tuples" else out.ids.shape[0]),
            "weighted": out.weights is not None,
            "ran": out.ran,
            "select_s": round(spent, 6),
            "meta": out.meta,
        }
        path = folder / "manifest.jsonl"
        if not self._manifest_opened:
            # the first line this process writes: a resumed run repeats selections from this slot on,
            # so earlier lines are kept and this slot's and later ones are dropped, once
            previous = path.read_text().splitlines() if path.exists() else []
            kept = [l for l in previous if l and _slot(json.loads(l)) < _slot(line)]
            atomic_write_text(path, "".join(x + "\n" for x in kept))
            self._manifest_opened = True
        with path.open("a") as fh:
            fh.write(json_text(line) + "\n")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Pipeline state plus the time spent selecting so far."""
        return {"pipeline": self.pipeline.state_dict(), "select_s": self.select_s, "last_epoch": self._last_epoch, "round": self.round}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from `state_dict`."""
        self.pipeline.load_state_dict(state["pipeline"])
        self.select_s = float(state.get("select_s", 0.0))
        self._last_epoch = int(state.get("last_epoch", 0))
        self.round = int(state.get("round", 0))
        self._current = None


def _slot(line: Mapping[str, Any]) -> tuple[int, int]:
    """A manifest line's place in the run: (round, epoch)."""
    return int(line.get("round", 0)), int(line.get("epoch", 0))
