"""Every ``conf/neighbors`` file instantiates a `NeighborConfig` that the layer runs with."""

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from selectkit.neighbors import NeighborConfig, knn

CONF = Path(__file__).resolve().parents[2] / "conf" / "neighbors"


@pytest.mark.parametrize("name", ["exact", "ivf", "hnsw"])
def test_config_file_instantiates_and_runs(name):
    if name == "hnsw":
        pytest.importorskip("faiss")  # HNSW is a FAISS index (the `faiss` extra)
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    config = instantiate(cfg)
    assert isinstance(config, NeighborConfig)
    assert set(cfg.keys()) - {"_target_"} == set(vars(config))
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    assert knn(x, k=3, config=config, exclude_self=True)[1].shape == (2000, 3)


def test_every_field_has_a_comment():
    for path in CONF.glob("*.yaml"):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#") and not line.startswith("_target_"):
                assert "#" in line, f"{path.name}: {line}"
