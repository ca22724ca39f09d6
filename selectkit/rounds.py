"""Rounds: a loop above epochs, the core of active learning.

``selectkit-train rounds=default`` (or ``experiment=active_digits``) runs ``rounds.num_rounds`` rounds.
Round ``r``:

1. builds the model afresh, seeded from ``(seed, r)``, or (``rounds.warm_start: true``) from round
   ``r-1``'s weights; a fresh Lightning ``Trainer``; and a `SelectionDataModule` whose base ids are the
   labelled ids and whose labels are the revealed ones (``-1`` elsewhere). The training pipeline is
   ``selector``/``pipeline`` (``full`` by default), built anew each round, so the loader is rebuilt
   on the grown labelled set;
2. fits for ``rounds.epochs_per_round`` epochs (default ``trainer.max_epochs``);
3. scores the unlabelled pool through the acquisition stage ``rounds.acquire`` (a stage spec like
   ``pipeline.stages.*``: ``name`` plus settings, typed by the selector's schema) with the trained
   model's providers and ``SelectContext.round = r``;
4. asks ``rounds.oracle`` for the labels of the acquired ids and adds them to the labelled set.

Every round acquires, the last one included, so ``labels_used`` is
``initial + num_rounds * budget``; a resume with a larger ``num_rounds`` trains on the last round's
acquisitions first. The budget lives in one place, ``rounds.budget``, and is given to the acquisition
selector's ``budget`` parameter; setting ``rounds.acquire.budget`` too is an error. The initial labelled
set is ``rounds.initial.size`` random items (split evenly over the true classes with
``class_balanced``) or ``rounds.initial.per_class`` items of each class, drawn from ``(seed, round 0)``.

Outputs, in the run directory: ``rounds/round_RRR.json`` (labelled count, queried ids, their scores
and labels, validation metrics, ``train_s``, ``select_s``), ``rounds/round_RRR.npz`` (``ids``,
``scores``, ``labels``), ``rounds.jsonl`` (one summary line per round), ``metrics.jsonl`` (one line
per epoch, with its ``round``, ``round_epoch`` and ``labelled`` count; ``epoch``, ``examples_seen``,
``train_s`` and ``select_s`` run on across rounds, so reports read it like any run's) and, at the end, ``summary.json`` with ``rounds`` and ``labels_used``.
The loop's state (labelled ids, revealed labels, next round, history, the model's weights) is written
atomically to ``checkpoints/rounds.pt`` after each round; ``resume=<that file>`` continues at the next
round and reproduces the uninterrupted run's queries (each round reseeds from ``(seed, r)``; a resume
in a new run directory writes the remaining rounds' files there, while ``rounds.jsonl``,
``metrics.jsonl`` and ``summary.json`` hold every round). Rounds run on one device.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selectkit.errors import ConfigError, SelectkitError
from selectkit.io import atomic_savez, atomic_write_json, atomic_write_text

#: salts of the loop's random draws
_INITIAL, _MODEL = 0x494E, 0x4D44
STATE_FILE = "rounds.pt"
STATE_VERSION = 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def round_settings(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.rounds`` checked and resolved; `ConfigError` names the first bad setting."""
    r = OmegaConf.to_container(cfg.rounds, resolve=True)
    if not isinstance(r, dict):
        raise ConfigError("rounds must be a mapping (e.g. rounds=default)")
    n = r.get("num_rounds")
    if not _is_int(n) or n < 1:
        raise ConfigError(f"rounds.num_rounds must be an integer >= 1, got {n!r}")
    b = r.get("budget")
    if not _is_int(b) or b < 1:
        raise ConfigError(f"rounds.budget must be an integer >= 1, got {b!r}")
    e = r.get("epochs_per_round")
    if not _is_int(e) or e < 1:
        raise ConfigError(f"rounds.epochs_per_round must be an integer >= 1, got {e!r}")
    if not isinstance(r.get("warm_start", False), bool):
        raise ConfigError(f"rounds.warm_start must be true or false, got {r.get('warm_start')!r}")
    init = r.get("initial") or {}
    size, per_class = init.get("size"), init.get("per_class")
    if (size is None) == (per_class is None):
        raise ConfigError("rounds.initial: set exactly one of rounds.initial.size and rounds.initial.per_class")
    if size is not None and (not _is_int(size) or size < 1):
        raise ConfigError(f"rounds.initial.size must be an integer >= 1, got {size!r}")
    if per_class is not None and (not _is_int(per_class) or per_class < 1):
        raise ConfigError(f"rounds.initial.per_class must be an integer >= 1, got {per_class!r}")
    if not isinstance(init.get("class_balanced", False), bool):
        raise ConfigError(f"rounds.initial.class_balanced must be true or false, got {init.get('class_balanced')!r}")
    acquire = r.get("acquire")
    if not isinstance(acquire, dict) or not acquire.get("name"):
        raise ConfigError("rounds.acquire.name must name an acquisition selector (e.g. least_confidence)")
    if "budget" in acquire:
        raise ConfigError("rounds.acquire.budget: the per-round budget is set in rounds.budget only; remove rounds.acquire.budget")
    if not isinstance(r.get("oracle"), dict) or "_target_" not in r["oracle"]:
        raise ConfigError("rounds.oracle._target_ must name an oracle class (e.g. selectkit.oracles.Simulated)")
    return r


def build_acquisition(cfg: DictConfig, settings: Mapping[str, Any]):
    """The one-stage `Pipeline` of ``rounds.acquire``, its selector's budget set from ``rounds.budget``."""
    from selectkit import registry
    from selectkit.pipeline import Pipeline, Stage
    from selectkit.schema import validate_stage
    from selectkit.selection import Acquisition
    from selectkit.train import RESERVED_STAGE_KEYS

    spec = dict(settings["acquire"])
    typed = validate_stage(spec, "rounds.acquire")
    params = {k: v for k, v in typed.items() if k not in RESERVED_STAGE_KEYS}
    cls = registry.get(spec["name"])
    if "budget" in cls._param_names():
        params["budget"] = settings["budget"]
    selector = registry.create(spec["name"], config_path="rounds.acquire", **params)
    if selector.returns is not Acquisition:
        raise ConfigError(f"rounds.acquire.name: {spec['name']} returns {selector.returns.__name__}, not an Acquisition; choose an acquisition selector")
    pipeline = Pipeline([Stage(selector, schedule="epoch", name="acquire")], seed=cfg.seed, config_path="rounds.acquire")
    pipeline.check()
    return pipeline


def initial_ids(settings: Mapping[str, Any], labels: np.ndarray, seed: int) -> np.ndarray:
    """The initial labelled ids (sorted), drawn from ``(seed, round 0)``; `ConfigError` if too many."""
    from selectkit.sampling import balanced_quotas, class_groups

    init = settings["initial"]
    n = labels.shape[0]
    rng = np.random.default_rng([seed, 0, _INITIAL])
    if init.get("per_class") is not None or init.get("class_balanced", False):
        classes, members = class_groups(labels)
        counts = np.array([m.size for m in members])
        if init.get("per_class") is not None:
            k = int(init["per_class"])
            if counts.min() < k:
                raise ConfigError(f"rounds.initial.per_class={k} is larger than the smallest class ({int(counts.min())} items of class {int(classes[counts.argmin()])})")
            quotas = np.full(counts.shape[0], k)
        else:
            if init["size"] > n:
                raise ConfigError(f"rounds.initial.size={init['size']} is larger than the pool of {n} training items")
            quotas = balanced_quotas(counts, int(init["size"]), rng)
        chosen = np.concatenate([rng.choice(m, size=q, replace=False) for m, q in zip(members, quotas)])
    else:
        if init["size"] > n:
            raise ConfigError(f"rounds.initial.size={init['size']} is larger than the pool of {n} training items")
        chosen = rng.choice(n, size=int(init["size"]), replace=False)
    return np.sort(chosen).astype(np.int64)


def _fingerprint(cfg: DictConfig, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a resume must share with the run it continues."""
    return {
        "seed": int(cfg.seed),
        "budget": settings["budget"],
        "initial": dict(settings["initial"]),
        "acquire": dict(settings["acquire"]),
        "warm_start": bool(settings.get("warm_start", False)),
        "epochs_per_round": settings["epochs_per_round"],
    }


def load_state(path: str | Path, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A round state saved by `save_state`; `ConfigError` naming the setting that differs."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file: one line
        raise ConfigError(f"resume: {path} is not a round state ({type(err).__name__}); pass <run>/checkpoints/{STATE_FILE}") from None
    if not isinstance(state, dict) or state.get("kind") != "rounds":
        raise ConfigError(f"resume: {path} is not a round state; pass <run>/checkpoints/{STATE_FILE}")
    saved = state["fingerprint"]
    for key, value in fingerprint.items():
        if saved.get(key) != value:
            where = "seed" if key == "seed" else f"rounds.{key}"
            raise ConfigError(f"{where}={value!r} differs from the resumed run's {saved.get(key)!r}; resume with the same settings")
    return state


def save_state(path: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(dict(state), str(tmp))
    tmp.replace(path)


def _continued(previous: list[dict[str, Any]], history: list[dict[str, Any]], rows: list[dict[str, Any]], r: int, labelled: int) -> list[dict[str, Any]]:
    """Round ``r``'s epoch rows continuing the run's: epochs, examples seen and seconds add up over
    rounds (earlier rounds' acquisition time included in ``select_s``); ``round_epoch`` and
    ``labelled`` say where in the loop each epoch ran."""
    epoch0 = len(previous)
    seen0 = previous[-1]["examples_seen"] if previous else 0
    train0 = sum(h["train_s"] for h in history)
    select0 = sum(h["select_s"] for h in history)
    out = []
    for x in rows:
        y = {"round": r, "round_epoch": x["epoch"], "labelled": labelled, **x}
        y.update(epoch=epoch0 + x["epoch"], examples_seen=seen0 + x["examples_seen"], train_s=round(train0 + x["train_s"], 4), select_s=round(select0 + x["select_s"], 4))
        out.append(y)
    return out


def _round_seed(seed: int, r: int) -> int:
    return int(np.random.default_rng([seed, r, _MODEL]).integers(2**31))


def run_rounds(cfg: DictConfig, out_dir: str | Path, pipeline: Any) -> dict[str, Any]:
    """Run the round loop of ``cfg.rounds`` into ``out_dir``; returns the summary (see module doc)."""
    import lightning.pytorch as pl

    from selectkit.control import SelectionController
    from selectkit.lightning import RunRecorder, SelectionDataModule
    from selectkit.oracles import Oracle, check_answer
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.selection import Selection
    from selectkit.train import _finish_wandb, _make_logger, build_module, build_pipeline, build_source, build_trainer, instantiate_node, loader_settings

    out_dir = Path(out_dir)
    settings = round_settings(cfg)
    if pipeline.returns is not Selection:
        raise ConfigError(f"{pipeline.config_path}: the training pipeline must end in a Selection; the acquisition stage goes in rounds.acquire")
    if cfg.trainer.devices * (cfg.trainer.get("num_nodes") or 1) != 1:
        raise ConfigError(f"trainer.devices: rounds run on one device, got trainer.devices={cfg.trainer.devices}")
    build_acquisition(cfg, settings)
    oracle = instantiate_node(cfg.rounds.oracle, "rounds.oracle")
    if not isinstance(oracle, Oracle):
        raise ConfigError(f"rounds.oracle._target_ must build a selectkit.oracles.Oracle, got {type(oracle).__name__}")
    source = build_source(cfg)
    meta = source.meta
    oracle.setup(source)
    n = len(source.train)
    num_rounds, budget = settings["num_rounds"], settings["budget"]
    fingerprint = _fingerprint(cfg, settings)

    if cfg.get("resume"):
        state = load_state(cfg.resume, fingerprint)
        labelled = np.asarray(state["labelled"], dtype=np.int64)
        revealed = np.asarray(state["revealed"], dtype=np.int64)
        start, history, weights = int(state["next_round"]), list(state["history"]), state.get("weights")
        epoch_rows = list(state.get("epoch_rows", []))
    else:
        true = source.train.labels()
        if true is None:
            raise ConfigError("rounds.initial: the training set has no labels to draw an initial labelled set from")
        labelled = initial_ids(settings, np.asarray(true, dtype=np.int64), int(cfg.seed))
        revealed = check_answer(labelled, oracle.label(labelled), meta.get("num_classes"))
        start, history, weights, epoch_rows = 0, [], None, []
    left = n - labelled.shape[0]
    need = (num_rounds - start) * budget
    if need > left:
        raise ConfigError(f"rounds.budget={budget} over {num_rounds - start} more rounds needs {need} unlabelled items, the pool has {left} (lower rounds.budget or rounds.num_rounds)")

    run_name = str(cfg.run_name) if cfg.get("run_name") else f"{pipeline.label}+{settings['acquire']['name']}"
    logger = _make_logger(cfg, out_dir, run_name)
    folder = out_dir / "rounds"
    state_path = out_dir / "checkpoints" / STATE_FILE
    monitor = "val_acc"
    for r in range(start, num_rounds):
        labels = np.full(n, -1, dtype=np.int64)
        labels[labelled] = revealed
        pl.seed_everything(_round_seed(int(cfg.seed), r), workers=True, verbose=False)
        module = build_module(cfg, meta)
        monitor = module.task.monitor
        if settings.get("warm_start") and weights is not None:
            module.model.load_state_dict(weights)
        train_pipeline = build_pipeline(cfg)
        dm = SelectionDataModule(source, train_pipeline, out_dir=out_dir, base_ids=labelled, labels=labels, round=r, **loader_settings(cfg))
        recorder = RunRecorder(None, [], dm, monitor=monitor)
        trainer = build_trainer(cfg, out_dir, [recorder], logger, max_epochs=settings["epochs_per_round"], enable_checkpointing=False)
        trainer.fit(module, datamodule=dm)
        if trainer.interrupted or trainer.state.status.value != "finished":
            raise SelectkitError(f"round {r}: training did not finish; no summary.json was written")

        unlabelled = np.setdiff1d(np.arange(n, dtype=np.int64), labelled)
        acquisition = build_acquisition(cfg, settings)
        controller = SelectionController(acquisition, labels, dm.train_ds.features, base_ids=unlabelled, rows=n)
        controller.round = r
        scorer = PoolScorer(module.adapter, dm.train_ds, batch_size=int((cfg.get("providers") or {}).get("batch_size", 1024)), device=module.device, memory_cap_gb=float((cfg.get("providers") or {}).get("memory_cap_gb", 4.0)), seed=int(cfg.seed))
        scorer.round = r
        controller.model_outputs = model_providers(scorer, module.task)
        out = controller.output(0)
        queried = out.ids.astype(np.int64)
        if queried.shape[0] > budget or np.intersect1d(queried, labelled).size:
            raise SelectkitError(f"rounds.acquire: {settings['acquire']['name']} returned {queried.shape[0]} ids (budget {budget}) or already labelled ones")
        scores = out.scores.get("scores", np.full(queried.shape[0], np.nan, dtype=np.float32)).astype(np.float32)
        got = check_answer(queried, oracle.label(queried), meta.get("num_classes"))

        val = {k: v for k, v in module.last_val.items() if isinstance(v, (int, float))}
        row = {
            "round": r,
            "labelled": int(labelled.shape[0]),
            "queried": int(queried.shape[0]),
            **{k: float(v) for k, v in val.items()},
            "train_s": round(recorder.train_s, 4),
            "select_s": round(dm.controller.select_s + controller.select_s, 4),
            "acquire_s": round(controller.select_s, 4),
            "epochs": len(recorder.rows),
        }
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(folder / f"round_{r:03d}.json", {**row, "queried_ids": queried.tolist(), "scores": scores.tolist(), "labels": got.tolist(), "val": module.last_val, "meta": out.meta})
        atomic_savez(folder / f"round_{r:03d}.npz", ids=queried, scores=scores, labels=got)
        epoch_rows += _continued(epoch_rows, history, recorder.rows, r, int(labelled.shape[0]))
        history.append(row)
        atomic_write_text(out_dir / "rounds.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        atomic_write_text(out_dir / "metrics.jsonl", "".join(json.dumps(x) + "\n" for x in epoch_rows))
        if logger is not None:
            logger.log_metrics({f"round/{k}": float(v) for k, v in row.items() if k != "round"} | {"round": r})

        order = np.argsort(np.concatenate([labelled, queried]), kind="stable")
        labelled = np.concatenate([labelled, queried])[order]
        revealed = np.concatenate([revealed, got])[order]
        weights = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
        save_state(state_path, {
            "kind": "rounds", "version": STATE_VERSION, "fingerprint": fingerprint, "next_round": r + 1,
            "labelled": torch.from_numpy(labelled), "revealed": torch.from_numpy(revealed),
            "history": history, "epoch_rows": epoch_rows, "weights": weights,
        })

    values = [h[monitor] for h in history if isinstance(h.get(monitor), (int, float))]
    targets = sorted(float(t) for t in (cfg.get("targets") or []))
    time_to_target: dict[str, Any] = {}
    for t in targets:
        hit = next((h for h in history if h.get(monitor, -np.inf) >= t), None)
        time_to_target[f"{t:g}"] = None if hit is None else {"round": hit["round"], "labels": hit["labelled"], "wall_s": round(sum(x["train_s"] + x["select_s"] for x in history[: hit["round"] + 1]), 4)}
    summary = {
        "status": "completed",
        "run_name": run_name,
        "selector": f"{pipeline.label}+{settings['acquire']['name']}",
        "seed": int(cfg.seed),
        "dataset": meta.get("name"),
        "train_size": n,
        "rounds": history,
        "labels_used": int(labelled.shape[0]),
        "initial": int(history[0]["labelled"]) if history else int(labelled.shape[0]),
        "budget": budget,
        "targets": targets,
        "train_s": round(sum(h["train_s"] for h in history), 4),
        "select_s": round(sum(h["select_s"] for h in history), 4),
        "final": dict(history[-1]) if history else {},
        "monitor": monitor,
        f"best_{monitor}": max(values) if values else None,
        "time_to_target": time_to_target,
        "epochs": len(epoch_rows),
    }
    atomic_write_json(out_dir / "summary.json", summary)
    if logger is not None and cfg.logger.name == "wandb":
        _finish_wandb(logger, out_dir, summary, cfg.logger.get("log_manifest", True))
    return summary
