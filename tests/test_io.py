"""The one JSON writer: values that are not finite numbers become null, numpy values plain JSON, and
what JSON cannot hold raises instead of being written."""

import json
import math

import numpy as np
import pytest

from selectkit.io import atomic_write_json, atomic_write_jsonl, json_safe, json_text


def _strict(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))


def test_non_finite_numbers_are_null_at_any_depth():
    value = {"a": math.nan, "b": [1.5, math.inf, -math.inf], "c": (np.float32("nan"), np.float64(2.0)), "d": {"e": np.array([np.nan, 1.0], dtype=np.float32)}}
    assert _strict(json_text(value)) == {"a": None, "b": [1.5, None, None], "c": [None, 2.0], "d": {"e": [None, 1.0]}}
    assert json_safe({"n": np.int64(3), "t": np.bool_(True), "s": "NaN"}) == {"n": 3, "t": True, "s": "NaN"}
    assert type(json_safe(np.int64(3))) is int


def test_files_written_are_strict_json(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"acc": float("nan"), "scores": np.full(3, np.inf)})
    assert _strict((tmp_path / "s.json").read_text()) == {"acc": None, "scores": [None, None, None]}
    atomic_write_jsonl(tmp_path / "m.jsonl", [{"loss": float("nan")}, {"loss": 0.5}])
    assert [_strict(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()] == [{"loss": None}, {"loss": 0.5}]


def test_what_json_cannot_hold_raises():
    with pytest.raises(TypeError):
        json_text({"x": object()})
