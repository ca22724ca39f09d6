"""Shared fixtures: Hydra composition of the real configs, forced to CPU, tmp dirs, no W&B."""

import os

import pytest
from hydra import compose, initialize_config_module

os.environ.setdefault("WANDB_MODE", "disabled")

FAST = [
    "data=digits",
    "model=mlp",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=3",
    "trainer.progress_bar=false",
]


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose ``train`` with overrides, CPU-only, with outputs under ``tmp_path``."""

    def make(*overrides, fast=True):
        base = (FAST if fast else []) + [f"paths.output_dir={tmp_path}", f"paths.data_dir={tmp_path / 'data'}"]
        with initialize_config_module("selectkit_conf", version_base="1.3"):
            return compose("train", overrides=base + list(overrides))

    return make
