"""Importance-weighted coresets in the time-to-accuracy harness, side by side in one run: a
sensitivity-sampling coreset of 10% (chosen once, and refreshed with the current model), leverage 10%
when the `leverage` selector is installed, a static random 10% and RS2 10%, on Fashion-MNIST with the MLP.

    python scripts/bench_coresets.py [--epochs 15] [--fraction 0.1] [--seed 0] [--out outputs/bench_coresets]

Every run's clock is ``train_s + select_s`` (selection, i.e. embedding, clustering and scoring, is
counted). Writes ``<out>/bench_coresets.md`` (a section ready for docs/benchmarks.md) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from benchlib.rs2 import accuracy_at_budget
from selectkit import registry
from selectkit.report import load_run, time_to_target
from selectkit.train import run


def _cfg(out: Path, overrides: list[str]):
    with initialize_config_module("selectkit_conf", version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={out}", "logger=none", "trainer.progress_bar=false", "checkpoint=false", *overrides])


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _manifest_meta(run_dir: Path) -> list[dict]:
    lines = [json.loads(l) for l in (run_dir / "selections" / "manifest.jsonl").read_text().splitlines()]
    return [{"epoch": l["epoch"], "select_s": l["select_s"], **next(iter(l["meta"].values()), {})} for l in lines if l["ran"]]


def methods(fraction: float, epochs: int, refresh: int) -> dict[str, list[str]]:
    """The runs compared: name -> overrides."""
    sens = ["selector=sensitivity", f"selector.fraction={fraction}", "selector.k=100"]
    out = {
        "random_static": ["selector=random", f"selector.fraction={fraction}"],
        "rs2": ["selector=rs2", f"selector.fraction={fraction}"],
        "sensitivity_once": sens,
        f"sensitivity_every{refresh}": sens + ["selector.schedule=epoch", f"selector.every={refresh}"],
    }
    if "leverage" in registry.entries():
        out["leverage"] = ["selector=leverage", f"selector.budget={fraction}"]
    return {k: v + [f"trainer.max_epochs={epochs}"] for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--refresh", type=int, default=3, help="epochs between refreshes of the refreshed coreset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of all methods, every other one in reverse order (load drifts)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 keeps timings stable on an oversubscribed machine); default: torch's")
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_coresets"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = [f"seed={args.seed}", "data=fashion_mnist", "model=mlp"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "load_before": load,
        "leverage_registered": "leverage" in registry.entries(),
        "runs": {},
    }
    plan = list(methods(args.fraction, args.epochs, args.refresh).items())
    for r in range(args.rounds):
        for name, overrides in plan if r % 2 == 0 else plan[::-1]:
            key = name if args.rounds == 1 else f"{name}@{r}"
            run_dir = args.out / key.replace("@", "_r")
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            try:
                run(_cfg(args.out, common + overrides + [f"run_name={name}"]), run_dir)
            except Exception as err:  # noqa: BLE001 - a method that cannot run is reported, not fatal
                results["runs"][key] = {"error": f"{type(err).__name__}: {err}"}
                print(f"{key}: failed: {err}", flush=True)
                continue
            rows = _rows(run_dir)
            results["runs"][key] = {"rows": rows, "final": rows[-1], "selections": _manifest_meta(run_dir), "run_dir": str(run_dir), "load": load}
            print(f"{key}: val_acc={rows[-1]['val_acc']:.4f} train_s={rows[-1]['train_s']:.1f} select_s={rows[-1]['select_s']:.2f} load={load:.1f}", flush=True)
    results["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    done = {k: v for k, v in results["runs"].items() if "rows" in v}
    best = max(v["final"]["val_acc"] for v in done.values())
    results["threshold"] = round(best - 0.02, 4)
    results["reach"] = {k: time_to_target(load_run(Path(v["run_dir"])), results["threshold"]) for k, v in done.items()}
    longest = max(v["final"]["train_s"] + v["final"]["select_s"] for v in done.values())
    results["budgets"] = [round(longest * f, 1) for f in (0.2, 0.4, 0.6, 0.8, 1.0)]
    results["acc_at_budget"] = {k: [accuracy_at_budget(v["rows"], b) for b in results["budgets"]] for k, v in done.items()}
    results["in_words"] = in_words(results)
    (args.out / "bench_coresets.json").write_text(json.dumps(results, indent=2, default=float))
    (args.out / "bench_coresets.md").write_text(render(results, args))
    print((args.out / "bench_coresets.md").read_text())


def in_words(r: dict) -> list[str]:
    """Which method wins at equal wall-clock, per round: the most budgets won and the fastest to the threshold."""
    rounds = sorted({k.split("@")[1] if "@" in k else "" for k in r["acc_at_budget"]})
    out = []
    for rnd in rounds:
        keys = [k for k in r["acc_at_budget"] if (k.split("@")[1] if "@" in k else "") == rnd]
        wins = {k: 0 for k in keys}
        for j in range(len(r["budgets"])):
            accs = {k: r["acc_at_budget"][k][j] for k in keys if r["acc_at_budget"][k][j] is not None}
            if accs:
                wins[max(accs, key=accs.get)] += 1
        reached = {k: r["reach"][k]["wall_s"] for k in keys if r["reach"][k]}
        fastest = min(reached, key=reached.get) if reached else None
        best = max(wins, key=wins.get)
        label = f"Round {rnd}: " if rnd else ""
        out.append(
            f"{label}at equal wall-clock the best accuracy at the most budgets is {best}'s ({wins[best]} of {len(r['budgets'])}); "
            + (f"the first to the threshold is {fastest} ({reached[fastest]:.1f} s)." if fastest else "no run reached the threshold.")
        )
    return out


def _fmt(x, spec=".4f"):
    return "—" if x is None else format(x, spec)


def render(r: dict, args) -> str:
    """Markdown section with every figure of the run."""
    lines = [
        f"Machine: {r['machine']}; load average {r['load_before']:.1f} before and {r['load_after']:.1f} after the runs "
        "(other jobs shared the CPU, so absolute seconds are inflated and noisy; the runs ran one after another). "
        f"Command: `python scripts/bench_coresets.py --epochs {args.epochs} --fraction {args.fraction} --refresh {args.refresh} --seed {args.seed} --rounds {args.rounds}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`"
        + (" (`name@r`: round r; odd rounds run the methods in reverse order)." if args.rounds > 1 else "."),
        "",
        f"Fashion-MNIST, MLP, {args.epochs} epochs each, {args.fraction:g} of the 60,000 training items per epoch. "
        f"Threshold = best final accuracy − 2 points = {r['threshold']:.4f}. Leverage registered: {'yes' if r['leverage_registered'] else 'no'}.",
        "",
        *r["in_words"],
        "",
        "| method | final val_acc | train_s | select_s | select share | time to threshold (s) | load at start |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k, v in r["runs"].items():
        if "error" in v:
            lines.append(f"| {k} | failed: {v['error'][:120]} | | | | |")
            continue
        f = v["final"]
        hit = r["reach"][k]
        share = f["select_s"] / max(f["train_s"] + f["select_s"], 1e-9)
        lines.append(f"| {k} | {f['val_acc']:.4f} | {f['train_s']:.1f} | {f['select_s']:.2f} | {100 * share:.1f}% | {_fmt(hit and hit['wall_s'], '.1f')} | {v['load']:.1f} |")
    lines += ["", "Validation accuracy at equal wall-clock budgets (training + selection seconds):", ""]
    lines.append("| method | " + " | ".join(f"{b:g} s" for b in r["budgets"]) + " |")
    lines.append("| --- |" + " --- |" * len(r["budgets"]))
    for k, accs in r["acc_at_budget"].items():
        lines.append(f"| {k} | " + " | ".join(_fmt(a) for a in accs) + " |")
    sens = {k: v for k, v in r["runs"].items() if k.startswith("sensitivity") and "selections" in v}
    if sens:
        lines += ["", "Sensitivity selection cost per selection (seconds, from the manifest):", ""]
        lines += ["| run | epoch | select_s | embed_s | cluster_s | score_s | model evals | clusters | ess |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for k, v in sens.items():
            for s in v["selections"]:
                lines.append(
                    f"| {k} | {s['epoch']} | {s['select_s']:.2f} | {s.get('embed_s', 0):.2f} | {s.get('cluster_s', 0):.2f} | {s.get('score_s', 0):.3f} | {s.get('model_evals', '—')} | {s.get('clusters', '—')} | {_fmt(s.get('ess'), '.0f')} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
