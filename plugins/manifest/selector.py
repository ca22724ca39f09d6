"""`FromManifest`: replays a selection stored in a manifest (``selections/``) as a static stage.

A manifest is what `selectkit-select` and `selectkit-train` write: ``selections/manifest.jsonl`` (one
line per selection: epoch, round, kind, size, ...) beside one ``.npz`` per selection holding
``indices`` (global ids of the training set) and, for weighted selections, ``weights``. The stage
maps the stored ids onto its pool and returns them with their weights, so an offline selection over
precomputed embeddings can be trained on with ``selector=manifest selector.path=<folder>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from selectkit.errors import ConfigError
from selectkit.selection import Selection
from selectkit.selector import AnyOf, Boolean, Check, Interval, IsNone, Pool, SelectContext, Selector


def _stem(epoch: int, round_: int) -> str:
    return f"epoch_{epoch:04d}" if round_ == 0 else f"round_{round_:03d}_epoch_{epoch:04d}"


def manifest_entry(folder: Path, epoch: int | None, round_: int | None, setting: str) -> tuple[dict[str, Any], Path]:
    """The manifest line chosen by ``epoch``/``round`` (None: the last selection) and its ``.npz``."""
    lines_path = folder / "manifest.jsonl"
    if not lines_path.is_file():
        raise ConfigError(f"{setting}.path: {folder} holds no manifest.jsonl; give a run folder, its selections/ folder or an epoch_NNNN.npz file")
    lines = [json.loads(line) for line in lines_path.read_text().splitlines() if line.strip()]
    kept = [l for l in lines if l.get("kind") == "selection"]
    if epoch is not None:
        kept = [l for l in kept if int(l.get("epoch", 0)) == epoch]
    if round_ is not None:
        kept = [l for l in kept if int(l.get("round", 0)) == round_]
    if not kept:
        what = ", ".join(f"{k} {v}" for k, v in (("epoch", epoch), ("round", round_)) if v is not None) or "any epoch"
        raise ConfigError(f"{setting}.epoch: {lines_path} has no training selection for {what}")
    line = max(kept, key=lambda l: (int(l.get("round", 0)), int(l.get("epoch", 0))))
    return line, folder / f"{_stem(int(line.get('epoch', 0)), int(line.get('round', 0)))}.npz"


class FromManifest(Selector):
    """The selection stored in a manifest, mapped onto this stage's pool (global ids to positions).

    Args:
        path: a run folder, its ``selections/`` folder, or one ``epoch_NNNN.npz`` file.
        epoch: which stored selection to replay; null: the last one (highest round, then epoch).
        round: the active-learning round of that selection; null: any.
        weights: keep the stored importance weights (true) or train on the items unweighted (false).

    The stored ids must all lie in the pool: an id the pool does not hold (a manifest written for
    another dataset, or one holding synthetic samples) stops the run naming ``<stage>.path``.
    """

    name = "manifest"
    default_schedule = "once"
    parameter_constraints = {
        "path": Check(lambda v: isinstance(v, str), "a path to a run folder, selections/ folder or .npz file"),
        "epoch": AnyOf((IsNone(), Interval(0, None, integer=True))),
        "round": AnyOf((IsNone(), Interval(0, None, integer=True))),
        "weights": Boolean(),
    }

    def __init__(self, *, path: str = "", epoch: int | None = None, round: int | None = None, weights: bool = True) -> None:
        self.path = path
        self.epoch = epoch
        self.round = round
        self.weights = weights

    def load(self) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """The stored (global ids, weights or None, facts about the entry)."""
        if not self.path:
            raise ConfigError(f"{self.config_path}.path is not set; give the run folder (or selections/ folder, or .npz file) to replay")
        where = Path(self.path).expanduser()
        if where.is_file():
            npz, line = where, {}
        else:
            folder = where / "selections" if (where / "selections").is_dir() else where
            if not folder.is_dir():
                raise ConfigError(f"{self.config_path}.path: {where} does not exist")
            line, npz = manifest_entry(folder, self.epoch, self.round, self.config_path)
        if not npz.is_file():
            raise ConfigError(f"{self.config_path}.path: {npz} is missing (the manifest names it); was the folder copied whole?")
        with np.load(npz) as z:
            if "indices" not in z.files:
                raise ConfigError(f"{self.config_path}.path: {npz} holds no 'indices' (tuples and acquisitions cannot be replayed as a training selection)")
            ids = np.asarray(z["indices"], dtype=np.int64)
            w = np.asarray(z["weights"], dtype=np.float32) if "weights" in z.files else None
        facts = {"file": str(npz), "epoch": line.get("epoch"), "round": line.get("round"), "stored_size": int(ids.shape[0])}
        return ids, w, facts

    def _select(self, pool: Pool, ctx: SelectContext) -> Selection:
        ids, w, facts = self.load()
        pool_ids = pool.ids
        order = np.argsort(pool_ids, kind="stable")
        ordered = pool_ids[order]
        at = np.minimum(np.searchsorted(ordered, ids), max(ordered.size - 1, 0))
        found = ordered[at] == ids if ordered.size else np.zeros(ids.shape, dtype=bool)
        if not found.all():
            missing = ids[~found]
            raise ConfigError(
                f"{self.config_path}.path: {missing.size} of the {ids.size} stored ids are not in this pool of {len(pool)} items "
                f"(first: {int(missing[0])}); was the manifest written for another dataset or pool?"
            )
        positions = order[at].astype(np.int64)
        weights = w if (self.weights and w is not None) else None
        return Selection(positions, weights=weights, meta=facts)
