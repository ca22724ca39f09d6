"""The tie rule on every search path and under several BLAS kernels of one machine.

Every result row is sorted by (returned score, index); identical rows enter by ascending index, at
the k-th place too; a pair's returned score does not depend on the path. `tie_runs.py` runs every path
(self-join, plain exact, bfloat16 pass, IVF, FAISS) in subprocesses whose kernel settings differ, on
data full of exact ties, and the results must agree exactly.
"""

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selectkit.neighbors import NeighborConfig, NeighborIndex, knn

CHECKER = Path(__file__).with_name("tie_runs.py")
RUNS = {  # kernel choices: ATen's vector code, MKL's and oneDNN's code paths, numpy's (and scipy's) OpenBLAS core
    "native": {},
    "generic": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Prescott"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
}


def _load_checker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tie_runs", CHECKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tie_runs = _load_checker()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each kernel setting's results (`tie_runs.run`), the subprocesses run side by side."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the kernel settings compared here are x86 ones")
    out = tmp_path_factory.mktemp("ties")
    started = {}
    for name, settings in RUNS.items():
        env = {key: value for key, value in os.environ.items() if key not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE")}
        env.update(settings)
        path = out / f"{name}.npz"
        started[name] = (path, subprocess.Popen([sys.executable, str(CHECKER), str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for name, (path, proc) in started.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        with np.load(path) as saved:
            results[name] = {key: saved[key] for key in saved.files}
    return results


def rule_breaks(dist: np.ndarray, idx: np.ndarray, l2: bool, base: np.ndarray | None = None, own: bool = False) -> list[int]:
    """Rows not sorted by (score, index), holding an index twice, or (with ``base``) listing a row
    whose identical copy of lower index is missing (``own``: row ``r`` searched without point ``r``,
    which is then not missing)."""
    sign = 1.0 if l2 else -1.0
    step = np.diff(sign * dist.astype(np.float64), axis=1)
    bad = (step < 0) | ((step == 0) & (np.diff(idx, axis=1) <= 0))
    rows = set(np.flatnonzero(bad.any(axis=1)).tolist())
    if base is not None:
        _, first = np.unique(base, axis=0, return_inverse=True)
        lowest = {}
        for i, g in enumerate(first.ravel()):
            lowest.setdefault(int(g), []).append(i)
        for r, row in enumerate(idx):
            listed = set(row.tolist())
            for i in row:
                copies = lowest[int(first.ravel()[i])]
                if any(c < i and c not in listed and not (own and c == r) for c in copies):
                    rows.add(r)
    return sorted(rows)


def reference(base: np.ndarray, queries: np.ndarray | None, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer data's exact top k by (score, index) in int64 (``queries=None``: each row without itself)."""
    b = base.astype(np.int64)
    q = b if queries is None else queries.astype(np.int64)
    if metric == "l2":
        key = (q * q).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * q @ b.T
    else:
        key = -(q @ b.T)
    if queries is None:
        np.fill_diagonal(key, np.iinfo(np.int64).max)
    order = np.lexsort((np.broadcast_to(np.arange(len(b)), key.shape), key), axis=1)[:, :k]
    score = np.take_along_axis(key, order, 1)
    return (score if metric == "l2" else -score).astype(np.float32), order


def test_the_kernel_settings_change_the_products(runs):
    """The settings really choose other kernels here (else the comparisons below prove nothing)."""
    prints = {tuple(r["fingerprints"].tolist()) for r in runs.values()}
    assert len(prints) >= 2, prints


def test_every_path_gives_the_same_results_under_every_kernel(runs):
    """Indices and distances of every path agree exactly across kernel settings. Cosine on integer
    data is left out: distinct rows there share a cosine exactly while their normalised float32 rows
    differ, and which of them takes the k-th place is the float32 products' call."""
    native = runs["native"]
    keys = [key[: -len("/idx")] for key in native if key.endswith("/idx") and not key.startswith("ints/cosine")]
    differ = []
    for name, other in runs.items():
        for key in keys:
            if key + "/idx" not in other:  # a path this setting does not run (bfloat16 products off the model)
                continue
            if not (np.array_equal(native[key + "/idx"], other[key + "/idx"]) and np.array_equal(native[key + "/dist"], other[key + "/dist"])):
                differ.append(f"{key} under {name}")
    assert not differ, differ


def test_every_path_follows_the_tie_rule(runs):
    """Rows sorted by (score, index), and identical rows listed by ascending index, in every run."""
    data = {"ints": tie_runs.ints()[0], "dups": tie_runs.dups()[0]}
    broken = []
    for name, run in runs.items():
        for key in (k[: -len("/idx")] for k in run if k.endswith("/idx")):
            rows = rule_breaks(run[key + "/dist"], run[key + "/idx"], "/l2/" in key, data[key.split("/")[0]], key.endswith("/self"))
            if rows:
                broken.append(f"{key} under {name}: rows {rows[:5]}")
    assert not broken, broken


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exact_paths_find_the_exact_neighbours_of_integer_data(runs, metric):
    """On integer data every exact path of the layer's own engines (and IVF probing every list)
    returns the int64 reference's top k by (score, index): indices and distances. (Between distinct
    points tied at the k-th place FAISS makes its own choice.)"""
    base, queries = tie_runs.ints()
    wrong = []
    for what, q in (("self", None), ("queries", queries)):
        ref_d, ref_i = reference(base, q, metric, tie_runs.K)
        for path in set(tie_runs.paths(metric)) - {"faiss"}:
            key = f"ints/{metric}/{path}/{what}"
            got_d, got_i = runs["native"][key + "/dist"], runs["native"][key + "/idx"]
            if not (np.array_equal(got_i, ref_i) and np.array_equal(got_d, ref_d)):
                wrong.append(f"{key}: {int((got_i != ref_i).any(axis=1).sum())} rows")
    assert not wrong, wrong


def test_the_bfloat16_pass_ran_and_certified_most_queries(runs):
    """Where bfloat16 products meet the certificate's model, the bf16 path really ran the pass and
    most of its integer-data queries were answered by it (not searched again in float32)."""
    ran = [run for run in runs.values() if "ints/l2/bf16/queries/idx" in run]
    if not ran:
        pytest.skip("torch's bfloat16 products here do not meet the certificate's error model")
    for run in ran:
        assert str(run["ints/l2/bf16/precision"]) == "bf16"
        assert int(run["ints/l2/bf16/rechecked"]) < 0.5 * len(run["ints/l2/bf16/queries/idx"])


def test_a_pair_gets_the_same_score_on_every_path(runs):
    """Every (query, neighbour) pair that two paths both return has one returned score, bit for bit,
    whatever path and kernel found it; and that score is the pair's own (within float32 rounding)."""
    for data, (base, queries) in (("ints", tie_runs.ints()), ("dups", tie_runs.dups())):
        for metric in ("l2", "ip", "cosine"):
            b, q = base.astype(np.float64), queries.astype(np.float64)
            if metric == "cosine":
                b, q = b / np.linalg.norm(b, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
            for what, against in (("self", b), ("queries", q)):
                seen: dict[tuple[int, int], float] = {}
                for run in runs.values():
                    for key in (k[: -len("/idx")] for k in run if k.startswith(f"{data}/{metric}/") and k.endswith(f"/{what}/idx")):
                        dist, idx = run[key + "/dist"], run[key + "/idx"]
                        pairs = b[idx] - against[:, None, :] if metric == "l2" else b[idx] * against[:, None, :]
                        own = ((pairs**2).sum(-1) if metric == "l2" else pairs.sum(-1)).astype(np.float32)
                        np.testing.assert_allclose(dist, own, rtol=1e-6, atol=1e-6, err_msg=key)
                        for (r, j), s in zip(np.ndindex(idx.shape), dist.ravel().tolist()):
                            assert seen.setdefault((r, int(idx[r, j])), s) == s, f"{key}: pair ({r}, {idx[r, j]})"


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_twins_enter_by_ascending_index_at_the_kth_place(metric):
    """A row's k-th place held by the higher-index copy of a duplicated row goes to the lower-index
    copy, and every search path lists identical rows by ascending index."""
    from selectkit.neighbors.rescore import rescored, twin_groups

    base, _ = tie_runs.dups()  # rows 900.. copy rows 0..299
    l2 = metric == "l2"
    rows = base if metric != "cosine" else base / np.linalg.norm(base, axis=1, keepdims=True).astype(np.float32)
    twins = twin_groups(rows)
    assert twins is not None and (twins.group >= 0).sum() == 600
    queries = rows[500:520] + np.float32(0.01)
    listed = np.stack([np.concatenate([np.arange(600, 605) + i, [900 + i]]) for i in range(20)])  # the twin of row i at the end, i itself missing
    dist, idx = rescored(rows, queries, listed, l2, block=8, twins=twins)
    for i, row in enumerate(idx):
        assert i in row and (900 + i not in row or list(row).index(i) < list(row).index(900 + i))
    assert not rule_breaks(dist, idx, l2, rows)
    for config in (NeighborConfig(metric=metric, block_size=32), NeighborConfig(metric=metric, backend="ivf", nlist=8, nprobe=3, exact_below=0, exact_self_below=0)):
        d, i = knn(base, k=7, config=config, exclude_self=True)
        assert not rule_breaks(d, i, l2, base, own=True), config
        d, i = knn(base, base[::7] + np.float32(0.01), k=7, config=config)
        assert not rule_breaks(d, i, l2, base), config


def test_identical_rows_are_found_once_per_group():
    """`twin_groups`: identical rows (0.0 and -0.0 alike) share a group listed by ascending index;
    distinct rows whose hashes might collide do not."""
    from selectkit.neighbors.rescore import twin_groups

    rows = np.array([[1, 2], [3, 4], [1, 2], [0, -0.0], [5, 6], [-0.0, 0], [1, 2], [2, 1]], dtype=np.float32)
    twins = twin_groups(rows)
    groups = [twins.members[a:b].tolist() for a, b in zip(twins.starts[:-1], twins.starts[1:])]
    assert sorted(groups) == [[0, 2, 6], [3, 5]]
    assert [twins.group[i] >= 0 for i in range(8)] == [True, False, True, True, False, True, True, False]
    assert twin_groups(np.arange(12, dtype=np.float32).reshape(6, 2)) is None


def test_ivf_merges_tied_candidates_by_index():
    """IVF probing every list is the exact search: tied scores across lists go to the smaller index,
    whichever list was probed first."""
    base, queries = tie_runs.ints()
    config = NeighborConfig(backend="ivf", nlist=8, nprobe=8, exact_below=0, exact_self_below=0)
    dist, idx = NeighborIndex(config=config).fit(base).search(queries, tie_runs.K)
    ref_d, ref_i = reference(base, queries, "l2", tie_runs.K)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_array_equal(dist, ref_d)
