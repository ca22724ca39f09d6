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
    "dataset",
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

    ``targets`` defaults to those the runs recorded. ``train_s`` and ``select_s`` are the whole run's
    seconds, as ``summary.json`` has them (every round of a round loop, its acquisitions counted in
    ``select_s``); ``select_overhead_pct`` is selection time as a share of training plus selection
    time. Missing values are None.
    """
    done = [r for r in runs if r.completed]
    targets = sorted(float(t) for t in targets) if targets else _targets_of(done)
    rows = []
    for run in done:
        s = run.summary
        final = s.get("final") if isinstance(s.get("final"), dict) else {}
        last = {**(run.metrics[-1] if run.metrics else {}), **final}
        # whole-run seconds, as summary.json has them (a round loop's `final` is its last round's)
        train_s = _num(s.get("train_s", last.get("train_s")))
        select_s = _num(s.get("select_s", last.get("select_s")))
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
            "dataset": s.get("dataset"),
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


def _dataset_name(dataset: Any) -> str:
    return "dataset not recorded" if dataset is None or dataset == "" else str(dataset)


def _by_dataset(items: Iterable[Any], dataset_of: Any = lambda item: item.get("dataset")) -> dict[Any, list[Any]]:
    """``items`` by their dataset (``summary.json``'s ``dataset``), datasets in first-seen order."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        groups[dataset_of(item)].append(item)
    return dict(groups)


def _run_title(row: Mapping[str, Any]) -> str:
    return str(row.get("run_name") or row["run"])


def full_data_targets(rows: Sequence[Mapping[str, Any]]) -> dict[Any, float]:
    """Each dataset's headline target: the best final accuracy of its own full-data runs that train as
    long as they were set to (runs whose name says ``compressed`` are controls, not the reference),
    minus 0.02. A dataset without a full-data run has none."""
    targets = {}
    for dataset, group in _by_dataset(rows).items():
        controls = [r for r in group if _is_full_data(r)]
        reference = [r for r in controls if "compress" not in _run_title(r)] or controls
        finals = [r["final_val_acc"] for r in reference if r["final_val_acc"] is not None]
        if finals:
            targets[dataset] = max(finals) - 0.02
    return targets


def speedups(runs: Sequence[Run], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each subset run against its own dataset's target (`full_data_targets`) and that dataset's
    full-data runs (the controls, e.g. full data and full data compressed to the subset's steps).

    One dict per subset run on a dataset with a target, in the order of ``rows``: ``dataset``,
    ``run``, ``name`` (run name), ``selector``, ``epochs``, ``target``, ``hit`` (as `time_to_target`;
    None when never reached), ``wall_s`` (None when never reached) and ``controls``, a list of
    ``(name, wall_s or None)`` for each full-data run on the same dataset.
    """
    by_name = {r.name: r for r in runs}
    targets = full_data_targets(rows)

    def seconds(hit: Mapping[str, Any] | None) -> float | None:
        return _num(hit.get("wall_s")) if hit else None

    out = []
    for row in rows:
        dataset = row.get("dataset")
        if _is_full_data(row) or dataset not in targets:
            continue
        target = targets[dataset]
        hit = time_to_target(by_name[row["run"]], target)
        controls = [c for c in rows if _is_full_data(c) and c.get("dataset") == dataset]
        out.append({
            "dataset": dataset,
            "run": row["run"],
            "name": _run_title(row),
            "selector": row.get("selector"),
            "epochs": row.get("epochs"),
            "target": target,
            "hit": hit,
            "wall_s": seconds(hit),
            "controls": [(_run_title(c), seconds(time_to_target(by_name[c["run"]], target))) for c in controls],
        })
    return out


def _goal(target: float) -> str:
    return f"{target:.4f} (full data's final accuracy minus 2 points)"


def _against(reach: Mapping[str, Any]) -> str:
    """How a subset run's time to its target compares with each control's, in words."""
    mine, parts = reach["wall_s"], []
    for name, theirs in reach["controls"]:
        if theirs is None:
            parts.append(f"{name} never reached it")
        elif mine is None:
            parts.append(f"{name} reached it after {theirs:.1f} s")
        elif theirs >= mine:
            parts.append(f"{theirs / mine:.1f}x sooner than {name} ({theirs:.1f} s)" if mine > 0 else f"sooner than {name} ({theirs:.1f} s)")
        else:
            parts.append(f"{mine / theirs:.1f}x later than {name} ({theirs:.1f} s)")
    return ", and ".join(parts)


def reach_sentence(reach: Mapping[str, Any]) -> str:
    """One `speedups` entry in words: when the run reached its target and how that compares with
    each control, or that it did not reach it."""
    if reach["wall_s"] is None:
        return f"{reach['name']} did not reach {_goal(reach['target'])} in its {reach['epochs']} epochs."
    return f"{reach['name']} reached {_goal(reach['target'])} after {reach['wall_s']:.1f} s of training and selection: {_against(reach)}."


def headlines(reaches: Sequence[Mapping[str, Any]]) -> list[str]:
    """The report's first lines, one per dataset: the fastest subset run that reached the dataset's
    target against each control, and how many of its subset runs reached it (every run is in the
    "Time to full data's accuracy" table)."""
    groups = _by_dataset(reaches)
    sentences = []
    for dataset, group in groups.items():
        prefix = "" if dataset is None and len(groups) == 1 else f"{_dataset_name(dataset)}: "
        reached = [g for g in group if g["wall_s"] is not None]
        if len(group) == 1:
            sentences.append(prefix + reach_sentence(group[0]))
        elif not reached:
            sentences.append(f"{prefix}none of the {len(group)} subset runs reached {_goal(group[0]['target'])}.")
        else:
            best = min(reached, key=lambda g: g["wall_s"])
            sentences.append(f"{prefix}{reach_sentence(best)[:-1]}; {len(reached)} of {len(group)} subset runs reached it.")
    return sentences


def _when(hit: Mapping[str, Any] | None) -> str:
    """`` (epoch 3)`` or, for a round loop, `` (round 2)``: where a `time_to_target` hit happened."""
    for key in ("epoch", "round"):
        if hit and hit.get(key) is not None:
            return f" ({key} {hit[key]})"
    return ""


def render_reach_markdown(reaches: Sequence[Mapping[str, Any]]) -> str:
    """The "Time to full data's accuracy" section: one row per subset run, with its dataset's target,
    when it reached it (or that it did not), and how that compares with each full-data run."""
    header = ["dataset", "run", "selector", "target", "reached after", "against full data"]
    body = []
    for g in reaches:
        when = f"{g['wall_s']:.1f} s{_when(g['hit'])}" if g["wall_s"] is not None else f"not reached in {g['epochs']} epochs"
        body.append([_fmt(_dataset_name(g["dataset"])), _fmt(g["run"]), _fmt(g["selector"]), f"{g['target']:.4f}", when, _fmt(_against(g))])
    return (
        "\n## Time to full data's accuracy\n\n"
        "Each subset run against its own dataset's target: the best final accuracy of that dataset's "
        "full-data runs (compressed controls aside) minus 2 points, reached after `train_s + select_s` seconds.\n\n"
        + _markdown_table(header, body)
        + "\n"
    )


def render_markdown(rows: list[dict[str, Any]], runs: Sequence[Run], targets: Sequence[float], reaches: Sequence[Mapping[str, Any]] | None = None) -> str:
    """``report.md``: the headline (one line per dataset), one table row per completed run grouped by
    dataset, every subset run against its dataset's full-data target, a per-dataset-and-selector
    summary, and the incomplete runs. ``reaches`` defaults to `speedups` of ``runs``."""
    keys = [_target_key(t) for t in targets]
    reaches = speedups(runs, rows) if reaches is None else reaches
    optional = [c for c in ("final_balanced_acc", "final_minority_recall") if any(r[c] is not None for r in rows)]
    header = ["run", "dataset", "selector", "seed", "epochs", "examples seen", "train_s (total)", "select_s (total)", "select overhead %", "final val_acc", "best val_acc"]
    header += [c.replace("final_", "final ").replace("_", " ") for c in optional]
    header += [f"time to {k}" for k in keys]
    body = []
    for r in (r for group in _by_dataset(rows).values() for r in group):
        cells = [
            _fmt(r["run"]),
            _fmt(_dataset_name(r["dataset"])),
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
        f"{len(rows)} completed run(s). *train_s (total)* and *select_s (total)* are the whole run's seconds "
        "of training and selection, validation excluded, as in `summary.json` (a round loop's add up over "
        "its rounds, acquisitions counted as selection); *select overhead* is `select_s / (train_s + select_s)`; "
        "*time to* a target is `train_s + select_s` up to the epoch whose validation accuracy first reached it.\n\n"
    )
    sentences = headlines(reaches)
    if sentences:
        out.write("\n".join(sentences) + "\n\n")
    out.write(_markdown_table(header, body) + "\n")
    if reaches:
        out.write(render_reach_markdown(reaches))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(_dataset_name(r["dataset"]), str(r["selector"]))].append(r)
    if any(len(g) > 1 for g in groups.values()):
        out.write("\n## By dataset and selector (mean over runs)\n\n")
        g_header = ["dataset", "selector", "runs", "final val_acc", "best val_acc", "train_s (total)", "select_s (total)"] + [f"time to {k} (reached)" for k in keys]
        g_body = []
        for (dataset, sel), group in groups.items():
            cells = [_fmt(dataset), _fmt(sel), str(len(group))]
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


#: legend entries per column beside a panel; more start another column
_LEGEND_ROWS = 24


def _styles(count: int) -> list[tuple[Any, str]]:
    """``count`` distinct (colour, line style) pairs: matplotlib's default cycle up to ten, tab20's
    colours beyond, then the same colours dashed, dotted and dash-dotted."""
    from matplotlib import colormaps

    if count <= 10:
        return [(f"C{i}", "-") for i in range(count)]
    cmap = colormaps["tab20"]
    return [(cmap(i % 20), ("-", "--", ":", "-.")[(i // 20) % 4]) for i in range(count)]


def _panels(entries: Sequence[int], width: float = 6.5) -> tuple[Any, list[Any]]:
    """A figure of stacked axes, one per panel, each ``width`` inches wide and as tall as a legend of
    ``entries[i]`` lines beside it needs (4 inches at least). Axes are placed by hand and `_save`
    keeps every artist (a tight bounding box), so a legend never covers a curve, nothing is cropped,
    and no layout engine gives up on a long legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heights = []
    for n in entries:
        rows = math.ceil(n / max(1, math.ceil(n / _LEGEND_ROWS))) if n else 0
        heights.append(max(4.0, 0.2 * rows + 0.5))
    gap, title = 1.1, 0.45  # inches per panel for its title (above) and x label (below)
    fig_w, fig_h = width + 1.0, sum(heights) + gap * len(heights)
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    FigureCanvasAgg(fig)
    axes, top = [], fig_h
    for h in heights:
        top -= title
        axes.append(fig.add_axes((0.9 / fig_w, (top - h) / fig_h, width / fig_w, h / fig_h)))
        top -= h + gap - title
    return fig, axes


def _legend_beside(ax: Any) -> None:
    """The axes' legend to its right, in as many columns of `_LEGEND_ROWS` entries as it needs."""
    entries = len(ax.get_legend_handles_labels()[0])
    if entries:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, ncol=max(1, math.ceil(entries / _LEGEND_ROWS)))


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)
    return path


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


#: the per-run plots: file name, x-axis label, and the x value of a metrics row
_X_AXES = {
    "wallclock": ("acc_vs_wallclock.png", "wall-clock seconds (train_s + select_s)", lambda m: (_num(m.get("train_s")) or 0.0) + (_num(m.get("select_s")) or 0.0)),
    "examples": ("acc_vs_examples.png", "examples seen", lambda m: _num(m.get("examples_seen"))),
}


def runs_figure(runs: Sequence[Run], x: str, targets: Sequence[float] = (), full_targets: Mapping[Any, float] | None = None) -> Any:
    """The figure of ``acc_vs_<x>.png`` (``x``: ``wallclock`` or ``examples``): one panel per dataset;
    one line per completed run, one colour and one legend entry per strategy (runs that differ only
    by seed share them, thinner); ``targets`` dotted and the dataset's own target of
    `full_data_targets` (``full_targets``) dashed; legends beside the panels."""
    _, xlabel, x_of = _X_AXES[x]
    datasets = _by_dataset([r for r in runs if r.completed], lambda r: r.summary.get("dataset")) or {None: []}
    full_targets = full_targets or {}
    groups_of = {d: strategy_groups(members) for d, members in datasets.items()}
    names_of = {d: group_names(groups) for d, groups in groups_of.items()}
    # one style per strategy name, the same in every panel (full data looks alike on every dataset)
    styles = dict.fromkeys(name for names in names_of.values() for name in names.values())
    styles = dict(zip(styles, _styles(len(styles))))
    fig, axes = _panels([len(g) + bool(targets) + (d in full_targets) for d, g in groups_of.items()])
    what = f"validation accuracy against {xlabel.split(' (')[0]}"
    for ax, (dataset, groups) in zip(axes, groups_of.items()):
        names = names_of[dataset]
        labels = _legend_labels(groups, names)
        for key, members in groups.items():
            colour, style = styles[names[key]]
            label = labels[key]
            many = len(members) > 1
            for run in members:
                points = [(x_of(m), _num(m.get("val_acc"))) for m in run.metrics]
                points = [(px, py) for px, py in points if px is not None and py is not None]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, color=colour, linestyle=style, marker="o", markersize=2 if many else 3, linewidth=0.8 if many else 1.5,
                            alpha=0.6 if many else 1.0, label=label)
                    label = None
        for k, t in enumerate(targets):
            ax.axhline(t, color="grey", linestyle=":", linewidth=1, label=None if k else f"targets ({', '.join(_target_key(t) for t in targets)})")
        if dataset in full_targets:
            ax.axhline(full_targets[dataset], color="black", linestyle="--", linewidth=1, label=f"full data's final - 2 points ({full_targets[dataset]:.4f})")
        ax.set_title(what if dataset is None and len(datasets) == 1 else f"{_dataset_name(dataset)}: {what}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.grid(True, alpha=0.3)
        _legend_beside(ax)
    return fig


def _legend_labels(groups: Mapping[tuple[str, tuple[str, ...]], list[Run]], names: Mapping[tuple[str, tuple[str, ...]], str]) -> dict[tuple[str, tuple[str, ...]], str]:
    """Each strategy group's legend entry: a lone run's label (`Run.label`), or the group's name and
    its run count; a lone run whose label another entry shares gets its group's name (the overrides
    that set it apart) and its seed instead."""
    labels = {key: members[0].label if len(members) == 1 else f"{names[key]} ({len(members)} runs)" for key, members in groups.items()}
    taken = defaultdict(int)
    for label in labels.values():
        taken[label] += 1
    for key, members in groups.items():
        if taken[labels[key]] > 1 and len(members) == 1:
            seed = members[0].summary.get("seed")
            labels[key] = names[key] if seed is None else f"{names[key]}, seed {seed}"
    return labels


def plot_runs(runs: Sequence[Run], out_dir: Path, targets: Sequence[float], full_targets: Mapping[Any, float] | None = None) -> list[Path]:
    """Write ``acc_vs_wallclock.png`` and ``acc_vs_examples.png`` (`runs_figure`)."""
    return [_save(runs_figure(runs, x, targets, full_targets), out_dir / filename) for x, (filename, _, _) in _X_AXES.items()]


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
    overrides that set a group apart are added in brackets), ``dataset``, ``runs``, ``seeds``, and per label count in ``labels`` (the labelled
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
            "dataset": members[0].summary.get("dataset"),
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
    """The "Accuracy against labels" section: one row per strategy, one column per label count (and a
    dataset column, rows grouped by it, when the curves span several datasets)."""
    counts = sorted({x for c in curves for x in c["labels"]})
    datasets = _by_dataset(curves)
    several = len(datasets) > 1
    header = (["dataset"] if several else []) + ["strategy", "seeds"] + [f"{x:,} labels" for x in counts]
    body = []
    for c in (c for group in datasets.values() for c in group):
        at = {x: k for k, x in enumerate(c["labels"])}
        cells = ([_fmt(_dataset_name(c["dataset"]))] if several else []) + [_fmt(c["strategy"]), str(len(c["seeds"]))]
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
    """``labels.csv``: one row per strategy and label count (mean, std, min, max, runs, dataset)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["strategy", "labels", "mean_val_acc", "std_val_acc", "min_val_acc", "max_val_acc", "runs", "dataset"])
        for c in curves:
            for k, x in enumerate(c["labels"]):
                writer.writerow([c["strategy"], x, c["mean"][k], c["std"][k], c["min"][k], c["max"][k], c["n"][k], c.get("dataset") or ""])


def labels_figure(curves: list[dict[str, Any]]) -> Any:
    """The figure of ``acc_vs_labels.png``: one panel per dataset, every strategy's mean curve with a
    min-max band over seeds, the legend beside the panel."""
    datasets = _by_dataset(curves) or {None: []}
    fig, axes = _panels([len(group) for group in datasets.values()], width=8.0)
    what = "validation accuracy against labels used (mean over seeds, band: min to max)"
    for ax, (dataset, group) in zip(axes, datasets.items()):
        for (colour, style), c in zip(_styles(len(group)), group):
            seeds = len(c["seeds"])
            ax.plot(c["labels"], c["mean"], color=colour, linestyle=style, marker="o", markersize=3, linewidth=1.5, label=f"{c['strategy']} ({seeds} seed{'s' if seeds != 1 else ''})")
            if any(n > 1 for n in c["n"]):
                ax.fill_between(c["labels"], c["min"], c["max"], color=colour, alpha=0.18, linewidth=0)
        xs = [x for c in group for x in c["labels"] if x > 0]
        if xs and max(xs) >= 20 * min(xs):
            ax.set_xscale("log")
        ax.set_title(what if dataset is None and len(datasets) == 1 else f"{_dataset_name(dataset)}: {what}")
        ax.set_xlabel("labelled items")
        ax.set_ylabel("validation accuracy")
        ax.grid(True, alpha=0.3, which="both")
        _legend_beside(ax)
    return fig


def plot_labels(curves: list[dict[str, Any]], path: Path) -> Path:
    """Write ``acc_vs_labels.png`` (`labels_figure`)."""
    return _save(labels_figure(curves), path)


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
    reaches = speedups(done, rows)
    markdown = render_markdown(rows, runs, targets, reaches)
    if curves:
        markdown += render_labels_markdown(curves)
    (out_dir / "report.md").write_text(markdown)
    write_csv(out_dir / "report.csv", rows)
    plot_runs(done, out_dir, targets, full_data_targets(rows))
    extra = ""
    if curves:
        write_labels_csv(out_dir / "labels.csv", curves)
        plot_labels(curves, out_dir / "acc_vs_labels.png")
        extra = ", labels.csv, acc_vs_labels.png"
    for sentence in headlines(reaches):
        print(f"{PROG}: {sentence}")
    print(f"{PROG}: {len(done)} run(s) -> {out_dir / 'report.md'}, report.csv, acc_vs_wallclock.png, acc_vs_examples.png{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
