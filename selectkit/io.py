"""Atomic file writes: a file is either absent, or complete; never half-written.

Each helper writes to a hidden temporary file beside the target and renames it into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(text)
    tmp.replace(path)


def atomic_write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2))


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez(path, **arrays)`` atomically (``path`` should end in ``.npz``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
