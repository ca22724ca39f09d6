"""Fixtures of the distributed tests; their helpers (`dist_launch`, `dist_ranks`) import from this folder."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dist_launch import merged, run_ranks  # noqa: E402


@pytest.fixture(scope="session")
def battery(tmp_path_factory) -> dict[int, dict]:
    """The battery scenario at world sizes 1, 2 and 4 (each world merged)."""
    base = tmp_path_factory.mktemp("battery")
    return {w: merged(run_ranks("battery", w, base / f"w{w}")) for w in (1, 2, 4)}
