"""``selectkit-report DIR [DIR ...]``: a table and plots comparing training runs.

A run directory is one that holds ``summary.json``, ``metrics.jsonl`` or ``.hydra/config.yaml`` (what
``selectkit-train`` writes); directories are searched recursively, so a Hydra multirun folder (``multirun.yaml`` plus one
sub-folder per job) works as well as single runs. Runs whose ``summary.json`` does not say
``"status": "completed"`` are listed as incomplete and left out of the table and plots.

Written into ``--out`` (default: the first DIR): ``report.md``, ``report.csv``,
``acc_vs_wallclock.png`` (validation accuracy against ``train_s + select_s``) and
``acc_vs_examples.png`` (against examples seen). Round loops (active learning, a ``rounds`` list in
``summary.json``) also get ``acc_vs_labels.png``: validation accuracy against the number of labels
used, one curve per strategy, the mean over runs that differ only by seed with a band from their
lowest to their highest accuracy, and an "Accuracy against labels" table in ``report.md`` (mean, std
and seeds at each label count) and ``labels.csv``. `load_runs`, `summarize` and `label_curves` are the
same steps for scripts and tests.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from selectkit.errors import ConfigError

PROG = "selectkit-report"
#: Sub-folders of a run that never hold other runs (not searched).
_SKIP_DIRS = {".hydra", "checkpoints", "selections", "shards", "wandb", "csv", "__pycache__"}
#: Columns of ``report.csv`` (``report.md`` shows them formatted, plus one per target).
COLUMNS = [
    "run",
    "run_name",
    "selector",
    "seed",
    "epochs",
    "examples_seen",
    "train_s",
    "select_s",
    "select_overhead_pct",
    "final_val_acc",
    "best_val_acc",
    "final_balanced_acc",
    "final_minority_recall",
    "overrides",
]


@dataclass
class Run:
    """One run directory as found on disk.

    Attributes:
        path: the run directory.
        name: its path relative to the DIR argument it was found under (the DIR's own name when the
            DIR is the run).
        summary: ``summary.json`` (empty when missing or unreadable).
        metrics: the rows of ``metrics.jsonl``, in order.
        overrides: Hydra's ``.hydra/overrides.yaml`` (command-line overrides of this run).
        problem: why the run is incomplete; None when it completed.
    """

    path: Path
    name: str
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def completed(self) -> bool:
        """Whether training finished (``summary.json`` with ``status: completed``)."""
        return self.problem is None

    @property
    def label(self) -> str:
        """Legend label: the run name and the selector (once when one starts with the other), and the seed."""
        run_name = str(self.summary.get("run_name") or self.name)
        selector = self.summary.get("selector")
        if not selector or str(selector) == run_name:
            label = run_name
        elif str(selector).startswith(run_name):
            label = str(selector)
        else:
            label = f"{run_name}: {selector}"
        seed = self.summary.get("seed")
        return label if seed is None else f"{label}, seed {seed}"


# ====================================================================================== loading
def _is_run_dir(path: Path) -> bool:
    return any((path / f).is_file() for f in ("summary.json", "metrics.jsonl", ".hydra/config.yaml"))


def find_run_dirs(root: str | Path) -> list[Path]:
    """Run directories under ``root`` (``root`` itself included), sorted naturally by path."""
    root = Path(root)
    if _is_run_dir(root):
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and _is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.startswith(".")]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root).parts))


def _natural_key(parts: Iterable[str]) -> list[tuple[int, int, str]]:
    """Sort key putting Hydra job folders ``2`` (or ``2_name``) before ``10``."""
    key = []
    for part in parts:
        head = part.split("_", 1)[0]
        key.append((0, int(head), part) if head.isdigit() else (1, 0, part))
    return key


def _read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    rows, bad = [], 0
    if not path.is_file():
        return rows, bad
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _read_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def load_run(run_dir: str | Path, name: str | None = None) -> Run:
    """Read one run directory; an unfinished or unreadable run comes back with ``problem`` set."""
    run_dir = Path(run_dir)
    run = Run(path=run_dir, name=name or run_dir.name)
    run.metrics, bad = _read_metrics(run_dir / "metrics.jsonl")
    run.overrides = _read_overrides(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        run.problem = "no summary.json (training did not finish)"
        return run
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        run.problem = f"summary.json is not valid JSON ({err.msg}, line {err.lineno})"
        return run
    if not isinstance(summary, dict):
        run.problem = "summary.json does not hold a JSON object"
        return run
    run.summary = summary
    if summary.get("status") != "completed":
        run.problem = f"summary.json has status {summary.get('status')!r}, not 'completed'"
    elif bad:
        run.problem = f"metrics.jsonl has {bad} unreadable line(s)"
    return run


def load_runs(dirs: Sequence[str | Path]) -> list[Run]:
    """Every run found under ``dirs``, completed or not, in order (duplicates dropped).

    Raises `ConfigError` naming the argument when a DIR does not exist or is not a directory.
    """
    runs: list[Run] = []
    seen: set[Path] = set()
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise ConfigError(f"DIR {str(d)!r} does not exist")
        if not root.is_dir():
            raise ConfigError(f"DIR {str(d)!r} is not a directory")
        for run_dir in find_run_dirs(root):
            resolved = run_dir.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            rel = run_dir.relative_to(root)
            name = rel.as_posix() if rel.parts else (root.resolve().name or str(root))
            runs.append(load_run(run_dir, name))
    return runs


# ====================================================================================== numbers
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _target_key(target: float) -> str:
    return f"{target:g}"


def time_to_target(run: Run, target: float) -> dict[str, Any] | None:
    """When ``run`` first reached validation accuracy ``target``: ``{"epoch", "wall_s", "examples_seen"}``.

    Taken from ``summary.json``'s ``time_to_target`` when it tracked that target, else from
    ``metrics.jsonl`` (``wall_s = train_s + select_s``); None when never reached.
    """
    recorded = run.summary.get("time_to_target")
    if isinstance(recorded, dict):
        for key, hit in recorded.items():
            try:
                same = math.isclose(float(key), target, abs_tol=1e-9)
            except ValueError:
                continue
            if same:
                return hit if isinstance(hit, dict) else None
    for row in run.metrics:
        acc = _num(row.get("val_acc"))
        if acc is not None and acc >= target:
            return {
                "epoch": row.get("epoch"),
                "wall_s": (_num(row.get("train_s")) or 0.0) + (_num(row.get("select_s")) or 0.0),
                "examples_seen": row.get("examples_seen"),
            }
    return None


def _targets_of(runs: Sequence[Run]) -> list[float]:
    found: set[float] = set()
    for run in runs:
        for t in run.summary.get("targets") or []:
            if _num(t) is not None:
                found.add(float(t))
        recorded = run.summary.get("time_to_target")
        if isinstance(recorded, dict):
            for key in recorded:
                try:
                    found.add(float(key))
                except ValueError:
                    pass
    return sorted(found)


def summarize(runs: Sequence[Run], targets: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per completed run, with the `COLUMNS` plus ``time_to_<target>`` (wall-clock seconds),
    ``epoch_to_<target>`` and ``examples_to_<target>`` for each target.

    ``targets`` defaults to those the runs recorded. ``select_overhead_pct`` is selection time as a
    share of training plus selection time. Missing values are None.
    """
    done = [r for r in runs if r.completed]
    targets = sorted(float(t) for t in targets) if targets else _targets_of(done)
    rows = []
    for run in done:
        s = run.summary
        final = s.get("final") if isinstance(s.get("final"), dict) else {}
        last = {**(run.metrics[-1] if run.metrics else {}), **final}
        train_s = _num(last.get("train_s", s.get("train_s")))
        select_s = _num(last.get("select_s", s.get("select_s")))
        overhead = None
        if train_s is not None and select_s is not None and train_s + select_s > 0:
            overhead = 100.0 * select_s / (train_s + select_s)
        accs = [a for a in (_num(m.get("val_acc")) for m in run.metrics) if a is not None]
        best = _num(s.get("best_val_acc"))
        if best is None and accs:
            best = max(accs)
        epoch = _num(last.get("epoch"))
        row: dict[str, Any] = {
            "run": run.name,
            "run_name": s.get("run_name"),
            "selector": s.get("selector"),
            "seed": s.get("seed"),
            "epochs": len(run.metrics) if run.metrics else (int(epoch) + 1 if epoch is not None else None),
            "examples_seen": last.get("examples_seen"),
            "train_s": train_s,
            "select_s": select_s,
            "select_overhead_pct": overhead,
            "final_val_acc": _num(last.get("val_acc")),
            "best_val_acc": best,
            "final_balanced_acc": _num(last.get("val_balanced_acc", last.get("balanced_acc"))),
            "final_minority_recall": _num(last.get("val_minority_recall", last.get("minority_recall"))),
            "overrides": " ".join(run.overrides),
        }
        for t in targets:
            hit = time_to_target(run, t)
            key = _target_key(t)
            row[f"time_to_{key}"] = _num(hit.get("wall_s")) if hit else None
            row[f"epoch_to_{key}"] = hit.get("epoch") if hit else None
            row[f"examples_to_{key}"] = hit.get("examples_seen") if hit else None
        rows.append(row)
    return rows


# ====================================================================================== outputs
def _fmt(value: Any, kind: str = "") -> str:
    if value is None or value == "":
        return "–"
    if kind == "acc":
        return f"{value:.4f}"
    if kind == "s":
        return f"{value:.1f}"
    if kind == "pct":
        return f"{value:.1f}%"
    if kind == "int" and isinstance(value, (int, float)):
        return f"{int(value):,}"
    return str(value).replace("|", "\\|")


def _target_cell(row: dict[str, Any], key: str) -> str:
    wall = row.get(f"time_to_{key}")
    if wall is None:
        return "not reached"
    epoch = row.get(f"epoch_to_{key}")
    return f"{wall:.1f} s (epoch {epoch})" if epoch is not None else f"{wall:.1f} s"


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _is_full_data(row: Mapping[str, Any]) -> bool:
    return str(row.get("selector")) == "full"


def speedups(runs: Sequence[Run], rows: list[dict[str, Any]]) -> tuple[float | None, list[str]]:
    """The headline: each subset run's time to full data's final accuracy minus 2 points, against each
    full-data run (the controls, e.g. full data and full data compressed to the subset's steps).

    The target is the best final accuracy of the full-data runs that train as long as they were set to
    (runs whose name says ``compressed`` are controls, not the reference), minus 0.02. Returns the target
    and one sentence per subset run; ``(None, [])`` without both kinds of run.
    """
    by_name = {r.name: r for r in runs}
    controls = [r for r in rows if _is_full_data(r)]
    subsets = [r for r in rows if not _is_full_data(r)]
    reference = [r for r in controls if "compress" not in str(r.get("run_name") or r["run"])] or controls
    finals = [r["final_val_acc"] for r in reference if r["final_val_acc"] is not None]
    if not controls or not subsets or not finals:
        return None, []
    target = max(finals) - 0.02

    def seconds(row: Mapping[str, Any]) -> float | None:
        hit = time_to_target(by_name[row["run"]], target)
        return _num(hit.get("wall_s")) if hit else None

    def name(row: Mapping[str, Any]) -> str:
        return str(row.get("run_name") or row["run"])

    sentences = []
    for sub in subsets:
        mine = seconds(sub)
        if mine is None:
            sentences.append(f"{name(sub)} did not reach {target:.4f} (full data's final accuracy minus 2 points) in its {sub['epochs']} epochs.")
            continue
        parts = []
        for ctrl in controls:
            theirs = seconds(ctrl)
            if theirs is None:
                parts.append(f"{name(ctrl)} never reached it")
            elif theirs >= mine:
                parts.append(f"{theirs / mine:.1f}x sooner than {name(ctrl)} ({theirs:.1f} s)")
            else:
                parts.append(f"{mine / theirs:.1f}x later than {name(ctrl)} ({theirs:.1f} s)")
        sentences.append(f"{name(sub)} reached {target:.4f} (full data's final accuracy minus 2 points) after {mine:.1f} s of training and selection: " + ", and ".join(parts) + ".")
    return target, sentences


def render_markdown(rows: list[dict[str, Any]], runs: Sequence[Run], targets: Sequence[float]) -> str:
    """``report.md``: one table row per completed run, a per-selector summary, and the incomplete runs."""
    keys = [_target_key(t) for t in targets]
    optional = [c for c in ("final_balanced_acc", "final_minority_recall") if any(r[c] is not None for r in rows)]
    header = ["run", "selector", "seed", "epochs", "examples seen", "train_s", "select_s", "select overhead %", "final val_acc", "best val_acc"]
    header += [c.replace("final_", "final ").replace("_", " ") for c in optional]
    header += [f"time to {k}" for k in keys]
    body = []
    for r in rows:
        cells = [
            _fmt(r["run"]),
            _fmt(r["selector"]),
            _fmt(r["seed"]),
            _fmt(r["epochs"]),
            _fmt(r["examples_seen"], "int"),
            _fmt(r["train_s"], "s"),
            _fmt(r["select_s"], "s"),
            _fmt(r["select_overhead_pct"], "pct"),
            _fmt(r["final_val_acc"], "acc"),
            _fmt(r["best_val_acc"], "acc"),
        ]
        cells += [_fmt(r[c], "acc") for c in optional]
        cells += [_target_cell(r, k) for k in keys]
        body.append(cells)
    out = io.StringIO()
    out.write("# selectkit report\n\n")
    out.write(
        f"{len(rows)} completed run(s). Times are seconds of training (`train_s`) and selection (`select_s`), "
        "validation excluded; *select overhead* is `select_s / (train_s + select_s)`; *time to* a target is "
        "`train_s + select_s` when the validation accuracy first reached it.\n\n"
    )
    _, headline = speedups(runs, rows)
    if headline:
        out.write("\n".join(headline) + "\n\n")
    out.write(_markdown_table(header, body) + "\n")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r["selector"])].append(r)
    if any(len(g) > 1 for g in groups.values()):
        out.write("\n## By selector (mean over runs)\n\n")
        g_header = ["selector", "runs", "final val_acc", "best val_acc", "train_s", "select_s"] + [f"time to {k} (reached)" for k in keys]
        g_body = []
        for sel, group in groups.items():
            cells = [_fmt(sel), str(len(group))]
            cells += [_fmt(_mean(r["final_val_acc"] for r in group), "acc"), _fmt(_mean(r["best_val_acc"] for r in group), "acc")]
            cells += [_fmt(_mean(r["train_s"] for r in group), "s"), _fmt(_mean(r["select_s"] for r in group), "s")]
            for k in keys:
                hits = [r[f"time_to_{k}"] for r in group if r[f"time_to_{k}"] is not None]
                cells.append(f"{_mean(hits):.1f} s ({len(hits)}/{len(group)})" if hits else f"not reached (0/{len(group)})")
            g_body.append(cells)
        out.write(_markdown_table(g_header, g_body) + "\n")
    incomplete = [r for r in runs if not r.completed]
    if incomplete:
        out.write("\n## Incomplete runs (not in the table or plots)\n\n")
        for r in incomplete:
            out.write(f"- `{r.name}`: {r.problem}\n")
    out.write("\n![accuracy against wall-clock](acc_vs_wallclock.png)\n\n![accuracy against examples seen](acc_vs_examples.png)\n")
    return out.getvalue()


def _mean(values: Iterable[Any]) -> float | None:
    nums = [v for v in (_num(x) for x in values) if v is not None]
    return sum(nums) / len(nums) if nums else None


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``report.csv``: the rows of `summarize`, one column per key, empty cells for missing values."""
    columns = list(COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})


def _palette(count: int) -> list[Any]:
    """``count`` distinct line colours: matplotlib's default cycle, then tab20's for more than ten."""
    from matplotlib import colormaps

    if count <= 10:
        return [f"C{i}" for i in range(count)]
    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(count)]


def strategy_groups(runs: Sequence[Run]) -> dict[tuple[str, tuple[str, ...]], list[Run]]:
    """Runs by strategy, in first-seen order: runs whose overrides differ only by seed (and output
    paths) and whose ``strategy`` agrees share a group (see `label_curves`)."""
    groups: dict[tuple[str, tuple[str, ...]], list[Run]] = defaultdict(list)
    for run in runs:
        groups[_strategy_key(run)].append(run)
    return groups


def group_names(groups: Mapping[tuple[str, tuple[str, ...]], Any]) -> dict[tuple[str, tuple[str, ...]], str]:
    """Each group's name: its strategy label, and where two groups share one, the overrides that set
    this group apart, in brackets (``margin [rounds.warm_start=true]``)."""
    shared: dict[str, set[str] | None] = {}
    for label, rest in groups:
        shared[label] = set(rest) if shared.get(label) is None else shared[label] & set(rest)
    names = {}
    for label, rest in groups:
        differs = [o for o in rest if o not in (shared[label] or set())]
        names[(label, rest)] = f"{label} [{' '.join(differs)}]" if differs else label
    return names


def plot_runs(runs: Sequence[Run], out_dir: Path, targets: Sequence[float], headline: float | None = None) -> list[Path]:
    """Write ``acc_vs_wallclock.png`` and ``acc_vs_examples.png``: one line per completed run, one colour
    and one legend entry per strategy (runs that differ only by seed share them, thinner)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [r for r in runs if r.completed]
    groups = strategy_groups(done)
    names = group_names(groups)
    palette = _palette(len(groups))
    paths = []
    for filename, xlabel, x_of in (
        ("acc_vs_wallclock.png", "wall-clock seconds (train_s + select_s)", lambda m: (_num(m.get("train_s")) or 0.0) + (_num(m.get("select_s")) or 0.0)),
        ("acc_vs_examples.png", "examples seen", lambda m: _num(m.get("examples_seen"))),
    ):
        fig = Figure(figsize=(8, 5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for colour, (key, members) in zip(palette, groups.items()):
            label = members[0].label if len(members) == 1 else f"{names[key]} ({len(members)} runs)"
            for run in members:
                points = [(x_of(m), _num(m.get("val_acc"))) for m in run.metrics]
                points = [(x, y) for x, y in points if x is not None and y is not None]
                if points:
                    xs, ys = zip(*points)
                    many = len(members) > 1
                    ax.plot(xs, ys, color=colour, marker="o", markersize=2 if many else 3, linewidth=0.8 if many else 1.5,
                            alpha=0.6 if many else 1.0, label=label)
                    label = None
        for t in targets:
            ax.axhline(t, color="grey", linestyle=":", linewidth=1)
        if headline is not None:
            ax.axhline(headline, color="black", linestyle="--", linewidth=1, label=f"full data's final - 2 points ({headline:.4f})")
        ax.set_title(f"validation accuracy against {xlabel.split(' (')[0]}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="lower right", ncol=2 if len(groups) > 8 else 1)
        fig.tight_layout()
        path = out_dir / filename
        fig.savefig(path, format="png")
        paths.append(path)
    return paths


# ====================================================================================== labels (rounds)
#: overrides that tell runs of one strategy apart without changing it (seeds are the bands)
_NOT_STRATEGY = ("seed", "resume", "run_name", "paths.output_dir", "hydra.run.dir", "hydra.sweep.dir")


def _strategy_key(run: Run) -> tuple[str, tuple[str, ...]]:
    """(strategy label, the run's other overrides): runs that differ only by seed share it."""
    s = run.summary
    label = str(s.get("strategy") or s.get("selector") or run.name)
    rest = tuple(sorted(o for o in run.overrides if o.split("=", 1)[0].lstrip("+~") not in _NOT_STRATEGY))
    return label, rest


def label_curves(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Accuracy against labels used, one curve per strategy (completed round runs only).

    Runs are grouped when their ``.hydra/overrides.yaml`` differ only by ``seed`` (and output paths),
    and their ``strategy`` agrees. Each curve: ``strategy`` (label; when two groups share one, the
    overrides that set a group apart are added in brackets), ``runs``, ``seeds``, and per label count in ``labels`` (the labelled
    items each round trained on) the ``mean``, ``std``, ``min``, ``max`` validation accuracy and ``n``
    (the runs that reached that count).
    """
    groups = strategy_groups([r for r in runs if r.completed and isinstance(r.summary.get("rounds"), list) and r.summary["rounds"]])
    names = group_names(groups)
    curves = []
    for (label, rest), members in groups.items():
        points: dict[int, list[float]] = defaultdict(list)
        for run in members:
            monitor = str(run.summary.get("monitor") or "val_acc")
            for h in run.summary["rounds"]:
                acc, count = _num(h.get(monitor)), _num(h.get("labelled"))
                if acc is not None and count is not None:
                    points[int(count)].append(acc)
        xs = sorted(points)
        name = names[(label, rest)]
        stats = [(sum(v) / len(v), v) for v in (points[x] for x in xs)]
        curves.append({
            "strategy": name,
            "runs": [r.name for r in members],
            "seeds": sorted({r.summary.get("seed") for r in members}, key=str),
            "labels": xs,
            "mean": [m for m, _ in stats],
            "std": [math.sqrt(sum((a - m) ** 2 for a in v) / len(v)) for m, v in stats],
            "min": [min(v) for _, v in stats],
            "max": [max(v) for _, v in stats],
            "n": [len(v) for _, v in stats],
        })
    return sorted(curves, key=lambda c: c["strategy"])


def render_labels_markdown(curves: list[dict[str, Any]]) -> str:
    """The "Accuracy against labels" section: one row per strategy, one column per label count."""
    counts = sorted({x for c in curves for x in c["labels"]})
    header = ["strategy", "seeds"] + [f"{x:,} labels" for x in counts]
    body = []
    for c in curves:
        at = {x: k for k, x in enumerate(c["labels"])}
        cells = [_fmt(c["strategy"]), str(len(c["seeds"]))]
        for x in counts:
            k = at.get(x)
            if k is None:
                cells.append("–")
            else:
                spread = f" ± {c['std'][k]:.4f}" if c["n"][k] > 1 else ""
                short = f" ({c['n'][k]} runs)" if c["n"][k] != len(c["runs"]) else ""
                cells.append(f"{c['mean'][k]:.4f}{spread}{short}")
        body.append(cells)
    return (
        "\n## Accuracy against labels\n\n"
        "Validation accuracy of each round against the labels it trained on: the mean over seeds ± the "
        "standard deviation; the plot's bands span the lowest to the highest seed.\n\n"
        + _markdown_table(header, body)
        + "\n\n![accuracy against labels](acc_vs_labels.png)\n"
    )


def write_labels_csv(path: Path, curves: list[dict[str, Any]]) -> None:
    """``labels.csv``: one row per strategy and label count (mean, std, min, max, runs)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["strategy", "labels", "mean_val_acc", "std_val_acc", "min_val_acc", "max_val_acc", "runs"])
        for c in curves:
            for k, x in enumerate(c["labels"]):
                writer.writerow([c["strategy"], x, c["mean"][k], c["std"][k], c["min"][k], c["max"][k], c["n"][k]])


def plot_labels(curves: list[dict[str, Any]], path: Path) -> Path:
    """``acc_vs_labels.png``: every strategy's mean curve with a min-max band over seeds, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for c in curves:
        (line,) = ax.plot(c["labels"], c["mean"], marker="o", markersize=3, linewidth=1.5, label=f"{c['strategy']} ({len(c['seeds'])} seed{'s' if len(c['seeds']) != 1 else ''})")
        if any(n > 1 for n in c["n"]):
            ax.fill_between(c["labels"], c["min"], c["max"], color=line.get_color(), alpha=0.18, linewidth=0)
    xs = [x for c in curves for x in c["labels"] if x > 0]
    if xs and max(xs) >= 20 * min(xs):
        ax.set_xscale("log")
    ax.set_title("validation accuracy against labels used (mean over seeds, band: min to max)")
    ax.set_xlabel("labelled items")
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        # beside the axes: curves of many strategies leave no corner free
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


# ====================================================================================== CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Table and plots of selectkit training runs (run or multirun directories).")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directories, or folders holding them (searched recursively)")
    p.add_argument("--out", default=None, help="where report.md, report.csv and the plots go (default: the first DIR)")
    p.add_argument("--targets", nargs="+", type=float, default=None, metavar="ACC", help="validation accuracies to report time-to-reach for (default: those the runs recorded)")
    return p


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: write the report; returns 0, or 2 after a one-line error on stderr."""
    args = _parser().parse_args(argv)
    for t in args.targets or []:
        if not (0 < t <= 1):
            return _error(f"--targets must be accuracies in (0, 1], got {t:g}")
    try:
        runs = load_runs(args.dirs)
    except ConfigError as err:
        return _error(str(err))
    for run in runs:
        if not run.completed:
            print(f"{PROG}: warning: skipping incomplete run {run.path}: {run.problem}", file=sys.stderr)
    done = [r for r in runs if r.completed]
    if not done:
        where = ", ".join(args.dirs)
        found = f" ({len(runs)} incomplete)" if runs else ""
        return _error(f"no completed runs (summary.json with status 'completed') under DIR {where}{found}")
    targets = sorted(args.targets) if args.targets else _targets_of(done)
    out_dir = Path(args.out) if args.out else Path(args.dirs[0])
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _error(f"--out {str(out_dir)!r} cannot be created: {err.strerror}")
    rows = summarize(done, targets)
    curves = label_curves(done)
    markdown = render_markdown(rows, runs, targets)
    if curves:
        markdown += render_labels_markdown(curves)
    (out_dir / "report.md").write_text(markdown)
    write_csv(out_dir / "report.csv", rows)
    headline, sentences = speedups(done, rows)
    plot_runs(done, out_dir, targets, headline)
    extra = ""
    if curves:
        write_labels_csv(out_dir / "labels.csv", curves)
        plot_labels(curves, out_dir / "acc_vs_labels.png")
        extra = ", labels.csv, acc_vs_labels.png"
    for sentence in sentences:
        print(f"{PROG}: {sentence}")
    print(f"{PROG}: {len(done)} run(s) -> {out_dir / 'report.md'}, report.csv, acc_vs_wallclock.png, acc_vs_examples.png{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
