"""The out-of-tree plugin path: install the example package, discover it, run it, compose its config."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "selectkit-example-plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
        check=True,
    )
    return target


def _run(code, site):
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_listed_with_its_distribution(plugin_site):
    out = _run("from selectkit.cli import main; main(['list'])", plugin_site)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("stride"))
    assert "selectkit-example-plugin" in line and "0.2.0" in line
    assert any(l.startswith("rs2") and "selectkit " in l for l in out.stdout.splitlines())


def test_passes_the_shared_suite_and_composes(plugin_site):
    code = """
from selectkit.testing import check_selector
from selectkit import registry
cls = registry.get('stride')
check_selector(lambda **kw: cls(**{'step': 4, **kw}), bad_params={'step': [0, 1.5, 'x']}, stochastic=True)
from hydra import compose, initialize_config_module
with initialize_config_module('selectkit_conf', version_base='1.3'):
    cfg = compose('train', overrides=['selector=stride', 'selector.step=3'])
from selectkit.train import build_pipeline
p = build_pipeline(cfg)
print(p.label, p.stages[0].selector.step)
"""
    out = _run(code, plugin_site)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("stride 3")
