"""Oracles: whoever reveals the labels a round loop asks for.

An oracle is built from ``rounds.oracle`` (a ``_target_``), bound to the run's data source with
`Oracle.setup`, and asked with `Oracle.label` for the labels of training-set ids. `check_answer` holds
every oracle to the same rule: exactly the asked ids, one integer class label each; anything else is a
one-line `ConfigError` naming ``rounds.oracle``.

`Simulated` reveals labels the data already holds. `FileOracle` asks people: it writes the round's
query as a CSV file and stops the run with `LabelsPending` (``selectkit-train`` exits with code
`WAITING_EXIT`, 75, after printing which file to fill and the command that resumes); the resumed run
reads the labels file and carries on. A data source can describe its items in the query file through
an optional hook, ``item_info(ids) -> {column: values}`` on the source or on its training set (e.g.
``{"path": [...]}`` or ``{"text": [...]}``); sources without it get ids only.
"""

from __future__ import annotations

import abc
import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from selectkit.errors import ConfigError, SelectkitError

#: exit code of ``selectkit-train`` when a run stopped to wait for labels (sysexits' EX_TEMPFAIL: retry later)
WAITING_EXIT = 75


class LabelsPending(SelectkitError):
    """A round's query is waiting for labels from people; not a failure.

    Attributes:
        query: the CSV file written with the asked ids.
        labels: the file the labels are read from once it exists.
        resume_command: the command that continues the run (set by the round loop).
    """

    def __init__(self, query: Path, labels: Path, count: int, classes: str) -> None:
        self.query, self.labels, self.count, self.classes = Path(query), Path(labels), int(count), classes
        self.resume_command: str | None = None
        super().__init__(self.message())

    def message(self) -> str:
        """What to do next, in one line."""
        then = f"; then run: {self.resume_command}" if self.resume_command else "; then resume the run with resume=<run>/checkpoints/rounds.pt"
        return (f"waiting for labels: {self.count} items to label in {self.query}; fill its label column ({self.classes}) "
                f"and save it as {self.labels}{then}")

    def __str__(self) -> str:
        return self.message()


class Oracle(abc.ABC):
    """Base class of oracles: `setup` once with the data source, then `label` per round.

    Attributes:
        run_dir: the run's output directory (set by the round loop before `setup`).
        round: the round whose query is asked (set by the loop before each `label`; None for the
            initial labelled set).
    """

    run_dir: Path | None = None
    round: int | None = None

    def setup(self, source: Any) -> None:
        """Bind to the run's data source (called once, before the first round)."""

    @abc.abstractmethod
    def label(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, labels)``: the training-set ids answered and their int64 class labels."""


class Simulated(Oracle):
    """Reveals the labels the data source already holds, held back from the loop until asked.

    The round loop trains only on ids it has asked for; this oracle answers from the training set's
    true labels (``source.train.labels()``). It refuses ids outside the training set and items the
    source has no label for.
    """

    def __init__(self) -> None:
        self._labels: np.ndarray | None = None

    def setup(self, source: Any) -> None:
        labels = source.train.labels()
        if labels is None:
            raise ConfigError("rounds.oracle: selectkit.oracles.Simulated needs a labelled training set (data.*), this one has no labels")
        self._labels = np.asarray(labels, dtype=np.int64)

    def label(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._labels is None:
            raise ConfigError("rounds.oracle: Simulated.label called before setup(source)")
        ids = np.asarray(ids, dtype=np.int64)
        n = self._labels.shape[0]
        unknown = ids[(ids < 0) | (ids >= n)]
        if unknown.size:
            raise ConfigError(f"rounds.oracle: asked for {unknown.size} unknown ids (e.g. {int(unknown[0])}); the training set has ids 0..{n - 1}")
        out = self._labels[ids]
        if (out < 0).any():
            raise ConfigError(f"rounds.oracle: {int((out < 0).sum())} of the asked items have no true label in the data source")
        return ids.copy(), out


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0)


def item_info(source: Any, ids: np.ndarray) -> dict[str, list[str]]:
    """Columns describing ``ids`` for people (file paths, text) from the source's optional
    ``item_info`` hook (on the source, else on its training set); empty without one."""
    for owner in (source, getattr(source, "train", None)):
        hook = getattr(owner, "item_info", None)
        if callable(hook):
            info = hook(np.asarray(ids, dtype=np.int64)) or {}
            out = {}
            for key, values in dict(info).items():
                values = [str(v) for v in values]
                if len(values) != len(ids):
                    raise ConfigError(f"data: item_info gave {len(values)} values of {key!r} for {len(ids)} ids")
                out[str(key)] = values
            return out
    return {}


class FileOracle(Oracle):
    """Labels from people, through CSV files in ``folder`` (default ``<run>/labels``).

    When round ``r`` asks for labels, the oracle reads ``round_RRR_labels.csv`` (``initial_labels.csv``
    for the initial set). Until that file exists it writes ``round_RRR_query.csv`` (columns ``id``,
    ``label`` left empty, then any columns of the data's ``item_info`` hook) and raises `LabelsPending`;
    the round loop has saved its state, so ``resume=<run>/checkpoints/rounds.pt`` continues once the
    labels file is there (filling the query file and saving it under the labels name is enough).

    The labels file needs the columns ``id`` and ``label``; a label is a class number or, when the data
    names its classes, a class name; other columns, blank lines and lines starting with ``#`` are
    ignored. Unknown ids, ids that were not asked, duplicate ids, missing or unreadable labels are
    one-line `ConfigError` s naming the file and line; the round state stays as it was.

    Args:
        folder: where the query and labels files live; None: ``<run>/labels``.
    """

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder
        self._source: Any = None
        self._classes: list[str] | None = None
        self._num_classes: int | None = None
        self._n = 0

    def setup(self, source: Any) -> None:
        self._source = source
        meta = getattr(source, "meta", {}) or {}
        self._classes = [str(c) for c in meta["classes"]] if meta.get("classes") else None
        self._num_classes = meta.get("num_classes")
        self._n = len(source.train)

    def paths(self, round: int | None) -> tuple[Path, Path]:
        """The (query, labels) files of ``round`` (None: the initial set)."""
        if self.folder is not None:
            folder = Path(self.folder)
        elif self.run_dir is not None:
            folder = Path(self.run_dir) / "labels"
        else:
            raise ConfigError("rounds.oracle.folder: set a folder for the query and labels files")
        stem = "initial" if round is None else f"round_{int(round):03d}"
        return folder / f"{stem}_query.csv", folder / f"{stem}_labels.csv"

    def _class_hint(self) -> str:
        if self._classes:
            shown = ", ".join(self._classes[:4]) + (", ..." if len(self._classes) > 4 else "")
            return f"class numbers 0..{len(self._classes) - 1} or names: {shown}"
        if self._num_classes:
            return f"class numbers 0..{self._num_classes - 1}"
        return "class numbers >= 0"

    def label(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._source is None:
            raise ConfigError("rounds.oracle: FileOracle.label called before setup(source)")
        ids = np.asarray(ids, dtype=np.int64)
        query, labels = self.paths(self.round)
        if labels.is_file():
            return self.read(labels, ids)
        if _rank() == 0:
            self.write_query(query, ids)
        raise LabelsPending(query, labels, ids.shape[0], self._class_hint())

    def write_query(self, path: Path, ids: np.ndarray) -> None:
        """The query file: one row per asked id (in the order asked), an empty label column, item info."""
        info = item_info(self._source, ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "label", *info])
            for k, i in enumerate(ids.tolist()):
                writer.writerow([i, "", *(info[c][k] for c in info)])
        tmp.replace(path)

    def _parse_label(self, text: str, where: str) -> int:
        text = text.strip()
        if self._classes and text in self._classes:
            return self._classes.index(text)
        try:
            value = int(text)
        except ValueError:
            if not text:
                raise ConfigError(f"rounds.oracle: {where}: the label is empty; give {self._class_hint()}") from None
            raise ConfigError(f"rounds.oracle: {where}: label {text!r} is not a class; give {self._class_hint()}") from None
        if value < 0 or (self._num_classes is not None and value >= self._num_classes):
            raise ConfigError(f"rounds.oracle: {where}: label {value} is not a class; give {self._class_hint()}")
        return value

    def read(self, path: Path, asked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, labels)`` from a labels file, checked row by row against the ``asked`` ids."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"rounds.oracle: {path} cannot be read ({type(err).__name__})") from None
        lines = [(k, l) for k, l in enumerate(text.splitlines(), start=1) if l.strip() and not l.lstrip().startswith("#")]
        if not lines:
            raise ConfigError(f"rounds.oracle: {path} is empty; it needs a header row with the columns id and label")
        rows = list(csv.reader([l for _, l in lines]))
        header = [h.strip().lower() for h in rows[0]]
        if "id" not in header or "label" not in header:
            raise ConfigError(f"rounds.oracle: {path}:{lines[0][0]}: the header must have the columns id and label, got {','.join(rows[0])}")
        ci, cl = header.index("id"), header.index("label")
        wanted = set(asked.tolist())
        seen: dict[int, int] = {}
        out_ids, out_labels = [], []
        for (line_no, _), row in zip(lines[1:], rows[1:]):
            where = f"{path}:{line_no}"
            if len(row) <= max(ci, cl):
                raise ConfigError(f"rounds.oracle: {where}: the row has {len(row)} fields, the header {len(header)}")
            try:
                i = int(row[ci].strip())
            except ValueError:
                raise ConfigError(f"rounds.oracle: {where}: id {row[ci].strip()!r} is not an integer") from None
            if i < 0 or i >= self._n:
                raise ConfigError(f"rounds.oracle: {where}: unknown id {i}; the training set has ids 0..{self._n - 1}")
            if i not in wanted:
                raise ConfigError(f"rounds.oracle: {where}: id {i} was not asked in this round (see the query file)")
            if i in seen:
                raise ConfigError(f"rounds.oracle: {where}: id {i} appears twice (first on line {seen[i]})")
            seen[i] = line_no
            out_ids.append(i)
            out_labels.append(self._parse_label(row[cl], where))
        missing = [i for i in asked.tolist() if i not in seen]
        if missing:
            raise ConfigError(f"rounds.oracle: {path}: {len(missing)} of the {asked.shape[0]} asked ids have no row (e.g. id {missing[0]})")
        return np.asarray(out_ids, dtype=np.int64), np.asarray(out_labels, dtype=np.int64)


def check_answer(asked: np.ndarray, answer: Any, num_classes: int | None) -> np.ndarray:
    """The labels of ``asked`` (in its order) from an oracle's ``(ids, labels)`` answer.

    Raises a one-line `ConfigError` naming ``rounds.oracle`` when the answer is malformed, leaves out
    asked ids, names ids that were not asked, or holds labels that are not classes of the data.
    """
    try:
        ids, labels = answer
        ids = np.asarray(ids)
        labels = np.asarray(labels)
    except (TypeError, ValueError):
        raise ConfigError(f"rounds.oracle: label(ids) must return (ids, labels), got {type(answer).__name__}") from None
    if ids.ndim != 1 or labels.shape != ids.shape or ids.dtype.kind not in "iu" or labels.dtype.kind not in "iu":
        raise ConfigError("rounds.oracle: label(ids) must return two 1-D integer arrays of equal length")
    extra = np.setdiff1d(ids, asked)
    if extra.size:
        raise ConfigError(f"rounds.oracle: answered {extra.size} unknown ids that were not asked (e.g. {int(extra[0])})")
    if np.unique(ids).size != ids.size:
        raise ConfigError("rounds.oracle: answered some ids more than once")
    if ids.size < asked.size:
        raise ConfigError(f"rounds.oracle: returned {ids.size} labels for the {asked.size} ids asked; every asked id needs a label")
    if labels.size and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        raise ConfigError(f"rounds.oracle: returned labels outside 0..{(num_classes or 1) - 1}")
    order = np.argsort(ids)
    return labels[order][np.searchsorted(ids[order], asked)].astype(np.int64)
