"""Process-wide settings: check_selector names what a selector leaves changed, selectors run in
either order leave the same settings behind, and selectkit-train sets the passive OpenMP wait policy
before torch loads (a policy already set is kept)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from selectkit import registry
from selectkit.selection import Selection
from selectkit.selector import SelectContext, Selector
from selectkit.testing import check_selector, make_pool
from selectkit.threads import changes, snapshot


class _Leaky(Selector):
    """Selects everything and leaves one process-wide setting changed (``what``)."""

    name = "leaky"

    def __init__(self, *, what: str = "torch") -> None:
        self.what = what

    def _select(self, pool, ctx):
        if self.what == "torch":
            torch.set_num_threads(torch.get_num_threads() + 1)
        elif self.what == "env":
            os.environ["OMP_NUM_THREADS"] = "1"
        elif self.what == "blas":
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")  # never restored
        return Selection(np.arange(len(pool), dtype=np.int64))


@pytest.fixture
def restore_settings():
    """Put back what the leaky selector changes."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    blas = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env
    for path, count in blas.items():
        threadpool_limits(limits={path: count})


@pytest.mark.parametrize(
    "what, named",
    [("torch", "torch intra-op threads (torch.set_num_threads)"), ("env", "environment variable OMP_NUM_THREADS: None -> '1'"), ("blas", "blas threads of")],
)
def test_check_selector_names_the_setting_a_selector_leaves_changed(what, named, restore_settings):
    from threadpoolctl import threadpool_info

    if what == "env" and "OMP_NUM_THREADS" in os.environ:
        pytest.skip("OMP_NUM_THREADS is set in this environment")
    if what == "blas" and not any(i["user_api"] == "blas" and i["num_threads"] > 1 for i in threadpool_info()):
        pytest.skip("no multi-threaded BLAS loaded")
    with pytest.raises(AssertionError, match=r"_Leaky\.select left process-wide settings changed") as err:
        check_selector(lambda **kw: _Leaky(what=what, **kw))
    assert named in str(err.value)


def test_snapshot_reads_without_starting_pools():
    before = snapshot()
    assert before["torch intra-op threads (torch.set_num_threads)"] == torch.get_num_threads()
    assert changes(before, snapshot()) == []
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 -> 3"]


SELECTORS = [("leverage", {"budget": 0.2}), ("random", {"fraction": 0.2}), ("sensitivity", {"k": 6, "fraction": 0.2}), ("kcenter", {"budget": 10})]


@pytest.mark.parametrize("first, second", [(a, b) for a in SELECTORS for b in SELECTORS if a[0] < b[0]])
def test_two_selectors_in_either_order_leave_the_settings_they_found(first, second):
    # time-to-accuracy comparisons run selectors one after another in a process: which ran first
    # must not change the settings the training after them runs with
    pool = make_pool()
    start = snapshot()
    for order in ((first, second), (second, first)):
        for name, params in order:
            registry.create(name, **params).select(pool, SelectContext(seed=0))
            assert changes(start, snapshot()) == [], f"after {name} (order {[n for n, _ in order]})"


def _fresh_python(code: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True).stdout.strip()


def test_selectkit_train_sets_the_passive_wait_policy_before_torch_loads():
    code = (
        "import os, sys\n"
        "import selectkit.train as t\n"
        "sys.argv = ['selectkit-train', 'selector=no_such_selector']\n"
        "try:\n    t.main()\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    out = _fresh_python(code).splitlines()[-1]
    assert out.split()[0] == "PASSIVE"
    assert _fresh_python(code, OMP_WAIT_POLICY="ACTIVE").splitlines()[-1].split()[0] == "ACTIVE", "a policy already set is kept"


def test_prefer_passive_waits_says_whether_it_came_in_time(monkeypatch):
    from selectkit.threads import prefer_passive_waits

    assert _fresh_python("from selectkit.threads import prefer_passive_waits as p; import os; print(p(), os.environ['OMP_WAIT_POLICY'])") == "True PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert "torch" in sys.modules and prefer_passive_waits() is False, "torch already loaded here: too late"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
