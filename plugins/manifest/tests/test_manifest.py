"""The manifest stage: replays stored selections, maps ids onto its pool, refuses what it cannot map."""

import json

import numpy as np
import pytest

from selectkit.errors import ConfigError
from selectkit.io import atomic_savez
from selectkit.selector import Pool, SelectContext
from selectkit.testing import check_selector_config
from selectkit_plugins.manifest import FromManifest


def _write(folder, entries):
    sel = folder / "selections"
    sel.mkdir(parents=True)
    lines = []
    for epoch, round_, ids, w in entries:
        stem = f"epoch_{epoch:04d}" if round_ == 0 else f"round_{round_:03d}_epoch_{epoch:04d}"
        arrays = {"indices": np.asarray(ids, dtype=np.int64)}
        if w is not None:
            arrays["weights"] = np.asarray(w, dtype=np.float32)
        atomic_savez(sel / f"{stem}.npz", **arrays)
        lines.append(json.dumps({"epoch": epoch, "round": round_, "kind": "selection", "size": len(ids)}))
    (sel / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return sel


def test_replays_the_last_selection_with_its_weights(tmp_path):
    _write(tmp_path, [(0, 0, [5, 1, 9], [1.0, 2.0, 0.5]), (3, 0, [7, 2], [0.25, 4.0])])
    out = FromManifest(path=str(tmp_path)).select(Pool(20), SelectContext(seed=0))
    assert out.indices.tolist() == [7, 2] and out.weights.tolist() == [0.25, 4.0]
    first = FromManifest(path=str(tmp_path / "selections"), epoch=0, weights=False).select(Pool(20), SelectContext(seed=0))
    assert first.indices.tolist() == [5, 1, 9] and first.weights is None


def test_maps_global_ids_onto_a_sub_pool(tmp_path):
    _write(tmp_path, [(0, 0, [40, 10, 30], None)])
    pool = Pool(np.array([10, 20, 30, 40], dtype=np.int64))
    out = FromManifest(path=str(tmp_path)).select(pool, SelectContext(seed=0))
    assert pool.ids[out.indices].tolist() == [40, 10, 30]


def test_ids_outside_the_pool_name_the_setting(tmp_path):
    _write(tmp_path, [(0, 0, [1, 25], None)])
    sel = FromManifest(path=str(tmp_path))
    sel.config_path = "pipeline.stages.replay"
    with pytest.raises(ConfigError, match=r"^pipeline\.stages\.replay\.path: 1 of the 2 stored ids are not in this pool"):
        sel.select(Pool(20), SelectContext(seed=0))


def test_missing_folder_and_epoch_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^selector\.path: .* does not exist"):
        FromManifest(path=str(tmp_path / "nope")).select(Pool(5), SelectContext(seed=0))
    _write(tmp_path, [(0, 0, [1], None)])
    with pytest.raises(ConfigError, match=r"^selector\.epoch: .* no training selection for epoch 4"):
        FromManifest(path=str(tmp_path), epoch=4).select(Pool(5), SelectContext(seed=0))


def test_an_npz_file_alone_is_enough(tmp_path):
    sel = _write(tmp_path, [(2, 0, [3, 4], None)])
    out = FromManifest(path=str(sel / "epoch_0002.npz")).select(Pool(10), SelectContext(seed=0))
    assert out.indices.tolist() == [3, 4]


def test_config():
    from pathlib import Path

    check_selector_config("manifest", str(Path(__file__).resolve().parents[1] / "conf" / "selector" / "manifest.yaml"))


def test_unset_path_names_the_setting():
    with pytest.raises(ConfigError, match=r"^selector\.path is not set"):
        FromManifest().select(Pool(5), SelectContext(seed=0))
