"""Every config in conf/ (and every plugin's selector YAML) composes and instantiates."""

from importlib import resources
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import get_class, instantiate

from selectkit import registry
from selectkit.train import build_pipeline, check_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def _options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(*overrides, hydra_cfg=False):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra_cfg)


def test_default_config_is_valid():
    cfg = _compose()
    check_config(cfg)
    assert build_pipeline(cfg).label == "rs2"


@pytest.mark.parametrize("name", registry.available())
def test_every_installed_selector_has_a_config_that_builds(name):
    cfg = _compose(f"selector={name}")
    pipeline = build_pipeline(cfg)
    assert pipeline.stages[0].selector.name == name


@pytest.mark.parametrize("name", _options("pipeline"))
def test_pipelines_build(name):
    pipeline = build_pipeline(_compose(f"pipeline={name}"))
    assert len(pipeline.stages) >= 2


@pytest.mark.parametrize("group", ["data", "model", "task", "optim", "trainer", "logger", "paths", "debug", "experiment"])
def test_group_options_compose_and_pass_checks(group):
    for option in _options(group):
        cfg = _compose(f"{group}={option}")
        check_config(cfg)


@pytest.mark.parametrize("name", _options("model"))
@pytest.mark.parametrize("task", _options("task"))
def test_models_and_tasks_instantiate(name, task):
    from selectkit.train import build_module

    cfg = _compose(f"model={name}", f"task={task}")
    if name == "minilm":  # a text encoder reads token rows (ids, attention mask)
        shape, x = (2, 8), torch.stack([torch.randint(1000, 2000, (2, 8)), torch.ones(2, 8, dtype=torch.int64)], dim=1).float()
    else:
        shape, x = (1, 28, 28), torch.randn(2, 1, 28, 28)
    module = build_module(cfg, {"input_shape": shape, "num_classes": 10})
    assert sum(p.numel() for p in module.model.parameters()) > 0
    assert module.adapter.embed(x).shape[0] == 2


@pytest.mark.parametrize("name", _options("data"))
def test_datasets_load(name):
    from selectkit.train import build_source

    if name == "arrays":
        pytest.skip("data=arrays needs the user's files (data.train); tests/test_open_core.py trains on it")
    cfg = _compose(f"data={name}")
    if name == "fashion_mnist" and not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    source = build_source(cfg)
    classes = cfg.data.pairs + cfg.data.val_pairs if name == "wordnet" else 10  # one label per (definition, word) pair
    assert len(source.train) > 0 and len(source.val) > 0 and source.meta["num_classes"] == classes


@pytest.mark.parametrize("name", _options("hydra/launcher"))
def test_launchers_compose(name):
    cfg = _compose(f"hydra/launcher={name}", hydra_cfg=True)
    assert get_class(cfg.hydra.launcher._target_) is not None


def test_neighbors_configs_instantiate():
    options = _options("neighbors")
    if not options:
        pytest.skip("no neighbors configs")
    for option in options:
        cfg = _compose(f"neighbors={option}")
        obj = instantiate(cfg.neighbors)
        assert type(obj).__name__ == "NeighborConfig"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("retrieval_") else n for n in _options("experiment")])
def test_experiments_run_a_few_steps(name, tmp_path):
    from selectkit.train import run

    cfg = _compose(
        f"experiment={name}", "logger=none", "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.max_steps=3",
        "trainer.progress_bar=false", f"paths.output_dir={tmp_path}",
    )
    summary = run(cfg, tmp_path / name)
    assert summary["status"] == "completed"


def test_shared_neighbors_settings_reach_stages_that_search():
    pipeline = build_pipeline(_compose("pipeline=smote_rs2", "neighbors=hnsw", "neighbors.ef_search=64"))
    smote = pipeline.stages[0].selector
    assert smote.neighbors["backend"] == "hnsw" and smote.neighbors["ef_search"] == 64
    own = build_pipeline(_compose("pipeline=smote_rs2", "neighbors=hnsw", "+pipeline.stages.smote.neighbors={backend: ivf}"))
    assert own.stages[0].selector.neighbors == {"backend": "ivf"}, "a stage's own setting wins"


def test_bad_shared_neighbors_setting_names_it():
    from selectkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"neighbors\.nprobe"):
        build_pipeline(_compose("neighbors=ivf", "neighbors.nprobe=0"))
