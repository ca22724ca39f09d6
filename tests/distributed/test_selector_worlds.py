"""Every built-in selector returns at world 2 and 4 what it returns at world 1 (gloo ranks on CPU)."""

import numpy as np
import pytest
from dist_launch import merged, run_ranks
from selector_cases import CASES


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[int, dict]:
    base = tmp_path_factory.mktemp("selectors")
    return {w: merged(run_ranks("selectors", w, base / f"w{w}", timeout=600)) for w in (1, 2, 4)}


@pytest.mark.ddp
@pytest.mark.parametrize("case", [c[0] for c in CASES])
@pytest.mark.parametrize("world", [2, 4])
def test_same_selection_at_every_world_size(worlds, case, world):
    one, other = worlds[1], worlds[world]
    assert f"{case}:error" not in one, f"world 1: {one[f'{case}:error'][0]}"
    assert f"{case}:error" not in other, f"world {world}: {other[f'{case}:error'][0]}"
    keys = sorted(k for k in one if k.startswith(f"{case}:"))
    assert keys, f"{case} returned nothing"
    assert keys == sorted(k for k in other if k.startswith(f"{case}:"))
    for key in keys:
        assert np.array_equal(one[key], other[key]), f"{key} differs between world 1 and world {world}"
