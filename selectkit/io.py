"""Atomic file writes and the project's one JSON writer.

Each atomic helper writes to a hidden temporary file beside the target and renames it into place: a
file is either absent, or complete; never half-written.

Every JSON file a run writes (``summary.json``, ``metrics.jsonl``, ``rounds.jsonl``,
``rounds/round_RRR.json``, ``selections/manifest.jsonl``) goes through `json_text`, which writes a
value that is not a finite number (NaN, an infinity) as ``null``, numpy scalars and arrays as plain
numbers and lists, and is checked by ``json.dumps(allow_nan=False)``: a strict JSON parser reads every
file, and no bare ``NaN`` or ``Infinity`` can be written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(text)
    tmp.replace(path)


def json_safe(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None, numpy scalars as Python numbers
    and numpy arrays as lists, through dicts, lists and tuples; anything else is left as it is."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON text (see `json_safe`); a value JSON cannot hold raises, never a bare NaN."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)


def atomic_write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented strict JSON (`json_text`) to ``path`` atomically."""
    atomic_write_text(path, json_text(payload, indent=2))


def atomic_write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` to ``path`` atomically, one strict JSON object (`json_text`) a line."""
    atomic_write_text(path, "".join(json_text(r) + "\n" for r in rows))


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez(path, **arrays)`` atomically (``path`` should end in ``.npz``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
