"""Shared fixtures: Hydra composition of the real configs, forced to CPU, tmp dirs, no W&B."""

import os

import pytest
from selectkit.testing import compose_train_config

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def compose_cfg(tmp_path):
    """Compose ``train`` with overrides, CPU-only, with outputs under ``tmp_path``."""

    def make(*overrides, fast=True):
        return compose_train_config(tmp_path, *overrides, fast=fast)

    return make
