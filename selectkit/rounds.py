"""Rounds: a loop above epochs, the core of active learning.

``selectkit-train rounds=default`` (or ``experiment=active_digits``) runs ``rounds.num_rounds`` rounds
of acquisition after labelling an initial set, then one more training on the final labelled set (round
``num_rounds``, which does steps 1 and 2 only: the run's final model sees every label bought). Round ``r``:

1. builds the model afresh, seeded from ``(seed, r)``, or (``rounds.warm_start: true``) from round
   ``r-1``'s weights; a fresh Lightning ``Trainer``; and a `SelectionDataModule` whose base ids are the
   labelled ids and whose labels are the revealed ones (``-1`` elsewhere). The training pipeline is
   ``selector``/``pipeline`` (``full`` by default), built anew each round, so the loader is rebuilt
   on the grown labelled set;
2. fits for ``rounds.epochs_per_round`` epochs (default ``trainer.max_epochs``), more if that many
   epochs over the labelled set make fewer than ``rounds.min_steps`` optimizer steps (a handful of
   labels in large batches would otherwise train for a few steps only; the validation interval
   ``trainer.check_val_every_n_epoch`` stretches by the same factor, so a round validates as often as
   its configured epochs would); the round's metrics are the final model's: if the last epoch was not a
   validation epoch, the model is validated once more;
3. scores the unlabelled pool through the acquisition stage ``rounds.acquire`` (a stage spec like
   ``pipeline.stages.*``: ``name`` plus settings, typed by the selector's schema, at compose time by
   ``selectkit-train``) with the trained model's providers and ``SelectContext.round = r``; under DDP
   each rank scores a shard of the pool and every rank acquires the same items;
4. asks ``rounds.oracle`` for the labels of the acquired ids and adds them to the labelled set.

Budgets: ``rounds.budget`` is the items acquired per round, an integer or a list with one entry per
round (a growing schedule such as ``[10, 30, 50, 100]``); it is given to the acquisition selector's
``budget`` parameter (setting ``rounds.acquire.budget`` too is an error). ``rounds.total_budget``
caps the labels used, the initial set included: the round that would pass it acquires only what is
left, and the round that finds it spent trains, is recorded and ends the loop. Without a total, rounds
``0..num_rounds-1`` acquire and round ``num_rounds`` trains on ``initial + sum of the budgets`` labels.
``labels_used`` is always the labelled count of the last round's model, the model whose metrics are
``summary.json``'s ``final`` (and the done line's).

The initial labelled set is ``rounds.initial.size`` random items (split evenly over the true classes
with ``class_balanced``), ``rounds.initial.per_class`` items of each class, drawn from
``(seed, round 0)``, or the ``rounds.initial.size`` items an acquisition selector
``rounds.initial.select`` (e.g. ``{name: typiclust}``) picks from the whole pool before any training,
seeing the ``features`` provider only. Its labels come from the oracle like every round's.

Outputs, in the run directory (rank 0 writes them): ``rounds/round_RRR.json`` (labelled count,
queried ids, their scores and labels, validation metrics, ``train_s``, ``select_s``, ``acquire_s``),
``rounds/round_RRR.npz`` (``ids``, ``scores``, ``labels``), ``rounds.jsonl`` (one summary line per
round, the last one's ``queried`` 0), ``metrics.jsonl`` (one line per epoch, with its ``round``, ``round_epoch`` and ``labelled``
count; ``epoch``, ``examples_seen``, ``train_s`` and ``select_s`` run on across rounds, so reports read
it like any run's) and, at the end, ``summary.json`` with ``rounds``, ``labels_used``, ``strategy`` and
``initial_s`` (seconds the initial selector took). Every JSON file goes through
`selectkit.io.json_text`: a score or metric that is not a finite number (BADGE's and TypiClust's
picks have no scores: NaN in the ``.npz``) is ``null``.

The loop's state (labelled ids, revealed labels, next round, history, the model's weights, and a query
still waiting for its labels) is written atomically to ``checkpoints/rounds.pt`` after each round and
before each question to the oracle; ``resume=<that file>`` continues where the run stopped and
reproduces the uninterrupted run's queries (each round reseeds from ``(seed, r)``; a resume in a new run
directory writes the remaining rounds' files there, while ``rounds.jsonl``, ``metrics.jsonl`` and
``summary.json`` hold every round). Resumed with more rounds (or a larger total) than it ended with,
a run trains its last round again, as the longer run would have (it acquired nothing), and goes on.
An oracle that fails (a bad labels file, a wrong answer) or waits
(`selectkit.oracles.FileOracle` raises `selectkit.oracles.LabelsPending`) leaves that state intact, so
the same ``resume=`` goes on once the answer is fixed or there.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selectkit.errors import ConfigError, SelectkitError
from selectkit.io import atomic_savez, atomic_write_json, atomic_write_jsonl

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
    if isinstance(b, list):
        bad = next((x for x in b if not _is_int(x) or x < 1), None)
        if not b or bad is not None:
            raise ConfigError(f"rounds.budget must be an integer >= 1 or a list of them (one per round), got {b!r}")
        if len(b) < n:
            raise ConfigError(f"rounds.budget lists {len(b)} budgets for rounds.num_rounds={n}; give one per round")
    elif not _is_int(b) or b < 1:
        raise ConfigError(f"rounds.budget must be an integer >= 1 or a list of them (one per round), got {b!r}")
    total = r.get("total_budget")
    if total is not None and (not _is_int(total) or total < 1):
        raise ConfigError(f"rounds.total_budget must be null or an integer >= 1, got {total!r}")
    e = r.get("epochs_per_round")
    if not _is_int(e) or e < 1:
        raise ConfigError(f"rounds.epochs_per_round must be an integer >= 1, got {e!r}")
    m = r.get("min_steps")
    if m is not None and (not _is_int(m) or m < 1):
        raise ConfigError(f"rounds.min_steps must be null or an integer >= 1, got {m!r}")
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
    select = init.get("select")
    if select is not None:
        if not isinstance(select, dict) or not select.get("name"):
            raise ConfigError("rounds.initial.select.name must name an acquisition selector (e.g. typiclust), or set rounds.initial.select=null")
        if size is None:
            raise ConfigError("rounds.initial.select needs rounds.initial.size (how many items it picks); unset rounds.initial.per_class")
        if init.get("class_balanced", False):
            raise ConfigError("rounds.initial.class_balanced: a selector picks the initial set without labels; set rounds.initial.class_balanced=false")
        if "budget" in select:
            raise ConfigError("rounds.initial.select.budget: the initial set's size is set in rounds.initial.size only; remove rounds.initial.select.budget")
    if total is not None and size is not None and size > total:
        raise ConfigError(f"rounds.total_budget={total} is smaller than rounds.initial.size={size}")
    acquire = r.get("acquire")
    if not isinstance(acquire, dict) or not acquire.get("name"):
        raise ConfigError("rounds.acquire.name must name an acquisition selector (e.g. least_confidence)")
    if "budget" in acquire:
        raise ConfigError("rounds.acquire.budget: the per-round budget is set in rounds.budget only; remove rounds.acquire.budget")
    if not isinstance(r.get("oracle"), dict) or "_target_" not in r["oracle"]:
        raise ConfigError("rounds.oracle._target_ must name an oracle class (e.g. selectkit.oracles.Simulated)")
    return r


def round_budget(settings: Mapping[str, Any], r: int, labelled: int) -> int:
    """Items round ``r`` acquires with ``labelled`` items labelled: ``rounds.budget`` (its ``r``-th entry
    when a list), trimmed so the labels used stay within ``rounds.total_budget``; 0 once it is spent,
    and 0 from round ``rounds.num_rounds`` on (the last training, on the final labelled set)."""
    if settings.get("num_rounds") is not None and r >= int(settings["num_rounds"]):
        return 0
    b = settings["budget"]
    budget = int(b[r]) if isinstance(b, list) else int(b)
    total = settings.get("total_budget")
    if total is not None:
        budget = max(0, min(budget, int(total) - int(labelled)))
    return budget


def _check_model_first(cfg: DictConfig, settings: Mapping[str, Any], source: Any, pipeline: Any) -> None:
    """What the training stages and the acquisition need from the model, checked on a model built for
    the purpose before the oracle is asked for the first labels (a refusal after people labelled
    would waste their work); each round's own model is then seeded and built afresh."""
    import lightning.pytorch as pl

    from selectkit.lightning import check_setup
    from selectkit.train import build_module

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    probe = build_module(cfg, source.meta)
    for stages in (pipeline, build_acquisition(cfg, settings)):
        check_setup(probe, source.train, stages)


def build_acquisition(cfg: DictConfig, settings: Mapping[str, Any], budget: int | None = None, *, key: str = "acquire"):
    """The one-stage `Pipeline` of ``rounds.acquire`` (or ``rounds.initial.select`` with
    ``key="initial.select"``), its selector's budget set to ``budget`` (default: round 0's)."""
    from selectkit import registry
    from selectkit.pipeline import Pipeline, Stage
    from selectkit.schema import validate_stage
    from selectkit.selection import Acquisition
    from selectkit.schema import STAGE_KEYS

    path = f"rounds.{key}"
    spec = dict(settings["initial"]["select"] if key == "initial.select" else settings["acquire"])
    typed = validate_stage(spec, path)
    params = {k: v for k, v in typed.items() if k not in STAGE_KEYS}
    cls = registry.get(spec["name"])
    if "budget" in cls._param_names():
        params["budget"] = max(1, int(budget if budget is not None else round_budget(settings, 0, 0)))
    selector = registry.create(spec["name"], config_path=path, **params)
    if selector.returns is not Acquisition:
        raise ConfigError(f"{path}.name: {spec['name']} returns {selector.returns.__name__}, not an Acquisition; choose an acquisition selector")
    from selectkit.train import _neighbors_settings

    shared = _neighbors_settings(cfg)
    if shared is not None and "neighbors" in selector.get_params() and selector.neighbors is None:
        selector.neighbors = dict(shared)
    pipeline = Pipeline([Stage(selector, schedule="epoch", name=key.split(".")[-1])], seed=cfg.seed, config_path=path)
    pipeline.check()
    return pipeline


def initial_by_selector(cfg: DictConfig, settings: Mapping[str, Any], source: Any) -> np.ndarray:
    """The initial labelled ids (sorted) picked by ``rounds.initial.select`` from the whole pool before
    any training, with the ``features`` provider only (no labels, no model), at round 0."""
    from selectkit.control import SelectionController

    size = int(settings["initial"]["size"])
    n = len(source.train)
    if size > n:
        raise ConfigError(f"rounds.initial.size={size} is larger than the pool of {n} training items")
    pipeline = build_acquisition(cfg, settings, size, key="initial.select")
    controller = SelectionController(pipeline, None, source.train.features, rows=n)
    ids = controller.output(0).ids.astype(np.int64)
    name = settings["initial"]["select"]["name"]
    if ids.shape[0] != size or np.unique(ids).shape[0] != size:
        raise SelectkitError(f"rounds.initial.select: {name} returned {ids.shape[0]} ids ({np.unique(ids).shape[0]} distinct), rounds.initial.size is {size}")
    return np.sort(ids)


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
        "min_steps": settings.get("min_steps"),
    }


def round_epochs(settings: Mapping[str, Any], rows: int, batch_size: int, world: int = 1) -> int:
    """A round's training epochs: ``rounds.epochs_per_round``, raised so that epochs over ``rows``
    labelled items in per-process batches of ``batch_size`` on ``world`` processes make at least
    ``rounds.min_steps`` optimizer steps (when set)."""
    epochs = int(settings["epochs_per_round"])
    min_steps = settings.get("min_steps")
    if not min_steps or rows < 1:
        return epochs
    per_epoch = math.ceil(math.ceil(rows / world) / int(batch_size))
    return max(epochs, math.ceil(int(min_steps) / per_epoch))


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


def _rank() -> int:
    """This process's rank: the process group's, else the launcher's environment (0 when alone)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)) or 0)


#: Hydra settings of how this run was launched, left out of its resume command: the mode, a sweep and
#: its launcher or sweeper, the job's place in it, and the run directory (given anew)
_LAUNCH_KEYS = ("hydra.mode", "hydra.run.dir", "hydra.sweep", "hydra.launcher", "hydra/launcher", "hydra.sweeper", "hydra/sweeper", "hydra.job.num", "hydra.job.id")
_HYDRA_PLAIN = re.compile(r"[\w./:@%+~-]+")


def _hydra_value(text: str) -> str:
    """``text`` as a value in Hydra's override grammar: as it is when plain, else double-quoted (a quote
    escaped, and the backslashes before a quote or at the end doubled)."""
    if _HYDRA_PLAIN.fullmatch(text):
        return text
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
    return '"' + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + '"'


def _shell_word(text: str) -> str:
    """``text`` quoted for a POSIX shell by `shlex.quote`, or in double quotes when that reads better
    and is as safe (no ``"``, ``$``, backquote, backslash or ``!`` inside)."""
    quoted = shlex.quote(text)
    if quoted != text and "'" in text and not re.search(r'["$`\\!]', text):
        return f'"{text}"'
    return quoted


def _absolute_searchpath(override: Any, cwd: str) -> str:
    """A ``hydra.searchpath`` override with its relative ``file://`` folders made absolute from ``cwd``
    (the folder the run started in), so the command works from any folder."""
    value = override.value()
    entries = [str(v) for v in (value if isinstance(value, list) else [value])]
    fixed = [f"file://{Path(cwd) / e[7:]}" if e.startswith("file://") and not Path(e[7:]).is_absolute() else e for e in entries]
    if fixed == entries:
        return str(override.input_line)
    return f"{override.input_line.split('=', 1)[0]}=[{','.join(_hydra_value(e) for e in fixed)}]"


def resume_command(out_dir: Path, state_path: Path) -> str:
    """The ``selectkit-train`` command line that resumes this run in ``out_dir`` from ``state_path``, to
    paste into a shell as it is: this run's own overrides (``resume`` given anew), its Hydra settings
    that shape the config (``hydra.searchpath`` with absolute folders, ``--config-dir``,
    ``--config-name``, ...; not how it was launched, see ``_LAUNCH_KEYS``), each quoted for the shell."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hc = HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:  # noqa: BLE001 - outside a Hydra app: a generic command
        hc = None
    if hc is None:
        return f"selectkit-train <this run's overrides> resume={shlex.quote(str(state_path))}"
    from selectkit.schema import CONFIG_MODULE, CONFIG_NAME

    parts = ["selectkit-train"]
    for source in hc.runtime.config_sources:
        if source.provider == "main" and (source.schema, source.path) != ("pkg", CONFIG_MODULE):
            parts += ["--config-path", f"pkg://{source.path}" if source.schema == "pkg" else str(Path(hc.runtime.cwd) / source.path)]
        elif source.provider == "command-line":
            parts += ["--config-dir", str(Path(hc.runtime.cwd) / source.path)]
    if hc.job.config_name != CONFIG_NAME:
        parts += ["--config-name", str(hc.job.config_name)]
    parser = OverridesParser.create()
    for text in hc.overrides.hydra:
        override = parser.parse_override(text)
        key = override.get_key_element().lstrip("+~")
        if any(key == k or key.startswith(k + ".") for k in _LAUNCH_KEYS):
            continue
        parts.append(_absolute_searchpath(override, hc.runtime.cwd) if key == "hydra.searchpath" else text)
    parts += [o for o in hc.overrides.task if parser.parse_override(o).get_key_element().lstrip("+~") != "resume"]
    parts += [f"resume={_hydra_value(str(state_path))}", f"hydra.run.dir={_hydra_value(str(out_dir))}"]
    return " ".join(_shell_word(p) for p in parts)


def _plan(settings: Mapping[str, Any], start: int, labelled: int) -> list[int]:
    """Budgets of rounds ``start..rounds.num_rounds`` from ``labelled`` labelled items; the loop ends
    after the first round with budget 0 (round ``num_rounds``, or ``rounds.total_budget`` spent)."""
    out = []
    for r in range(start, int(settings["num_rounds"]) + 1):
        b = round_budget(settings, r, labelled)
        out.append(b)
        labelled += b
        if b == 0:
            break
    return out


def _ask(oracle: Any, ids: np.ndarray, r: int | None, num_classes: int | None, out_dir: Path, state_path: Path) -> np.ndarray:
    """The oracle's checked labels of ``ids`` for round ``r`` (None: the initial set); a `LabelsPending`
    gets the command that resumes the run."""
    from selectkit.oracles import LabelsPending, check_answer

    oracle.round = r
    try:
        return check_answer(ids, oracle.label(ids), num_classes)
    except LabelsPending as wait:
        wait.resume_command = resume_command(out_dir, state_path)
        raise


def run_rounds(cfg: DictConfig, out_dir: str | Path, pipeline: Any) -> dict[str, Any]:
    """Run the round loop of ``cfg.rounds`` into ``out_dir``; returns the summary (see module doc).

    Raises `selectkit.oracles.LabelsPending` when the oracle waits for people (the state on disk
    then holds the pending query; ``resume=`` continues)."""
    import lightning.pytorch as pl

    from selectkit.control import SelectionController
    from selectkit.lightning import RunRecorder, SelectionDataModule
    from selectkit.oracles import Oracle
    from selectkit.providers import PoolScorer, model_providers
    from selectkit.selection import Selection
    from selectkit.train import _finish_wandb, _make_logger, build_module, build_pipeline, build_source, build_trainer, instantiate_node, loader_settings

    out_dir = Path(out_dir)
    settings = round_settings(cfg)
    if pipeline.returns is not Selection:
        raise ConfigError(f"{pipeline.config_path}: the training pipeline must end in a Selection; the acquisition stage goes in rounds.acquire")
    build_acquisition(cfg, settings)
    oracle = instantiate_node(cfg.rounds.oracle, "rounds.oracle")
    if not isinstance(oracle, Oracle):
        raise ConfigError(f"rounds.oracle._target_ must build a selectkit.oracles.Oracle, got {type(oracle).__name__}")
    source = build_source(cfg)
    meta = source.meta
    oracle.run_dir = out_dir
    oracle.setup(source)
    if not cfg.get("resume"):
        _check_model_first(cfg, settings, source, pipeline)
    n = len(source.train)
    num_rounds = settings["num_rounds"]
    fingerprint = _fingerprint(cfg, settings)
    state_path = out_dir / "checkpoints" / STATE_FILE
    writer = _rank() == 0

    if cfg.get("resume"):
        state = load_state(cfg.resume, fingerprint)
        labelled = np.asarray(state["labelled"], dtype=np.int64)
        revealed = np.asarray(state["revealed"], dtype=np.int64)
        start, history, weights = int(state["next_round"]), list(state["history"]), state.get("weights")
        epoch_rows = list(state.get("epoch_rows", []))
        pending = state.get("pending")
        initial_s = float(state.get("initial_s", 0.0))
        start_weights = state.get("start_weights")
        if pending is None and history and int(history[-1]["queried"]) == 0 and round_budget(settings, start - 1, labelled.shape[0]) > 0:
            # the run ended with a round that acquired nothing, and these settings give that round a
            # budget (more rounds, a larger total): train it again as the longer run would, and acquire
            if settings.get("warm_start") and start > 1 and "start_weights" not in state:
                raise ConfigError(f"resume: {cfg.resume} cannot add rounds to this warm-started run (its state has no weights of round {start - 2}); start a new run")
            start, weights = start - 1, start_weights
            history.pop()
            epoch_rows = [x for x in epoch_rows if x["round"] < start]
    else:
        initial_s = 0.0
        init = settings["initial"]
        if init.get("select") is not None:
            t0 = time.perf_counter()
            first = initial_by_selector(cfg, settings, source)
            initial_s = round(time.perf_counter() - t0, 4)
        else:
            true = source.train.labels()
            if true is None:
                raise ConfigError("rounds.initial: the training set has no labels to draw an initial labelled set from; pick it with rounds.initial.select")
            first = initial_ids(settings, np.asarray(true, dtype=np.int64), int(cfg.seed))
        labelled, revealed = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        start, history, weights, epoch_rows, start_weights = 0, [], None, [], None
        pending = {"round": -1, "ids": torch.from_numpy(first)}
        if settings.get("total_budget") is not None and first.shape[0] > settings["total_budget"]:
            raise ConfigError(f"rounds.total_budget={settings['total_budget']} is smaller than the initial set of {first.shape[0]} items")
    waiting = 0 if pending is None else int(pending["ids"].shape[0])
    acquired = pending is not None and int(pending["round"]) == start
    plan = _plan(settings, start + int(acquired), labelled.shape[0] + waiting)
    left = n - labelled.shape[0] - waiting
    if sum(plan) > left:
        raise ConfigError(f"rounds.budget={settings['budget']} over {sum(1 for b in plan if b)} more rounds needs {sum(plan)} unlabelled items, the pool has {left} (lower rounds.budget, rounds.total_budget or rounds.num_rounds)")

    def state_now(next_round: int, pend: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            "kind": "rounds", "version": STATE_VERSION, "fingerprint": fingerprint, "next_round": next_round,
            "labelled": torch.from_numpy(labelled), "revealed": torch.from_numpy(revealed),
            "history": history, "epoch_rows": epoch_rows, "weights": weights, "pending": pend, "initial_s": initial_s,
            "start_weights": start_weights if settings.get("warm_start") else None,
        }

    if pending is not None and int(pending["round"]) == -1:
        if writer:
            save_state(state_path, state_now(0, pending))
        ids = pending["ids"].numpy().astype(np.int64)
        got = _ask(oracle, ids, None, meta.get("num_classes"), out_dir, state_path)
        order = np.argsort(ids, kind="stable")
        labelled, revealed, pending = ids[order], got[order], None
        if writer:
            save_state(state_path, state_now(0, None))

    run_name = str(cfg.run_name) if cfg.get("run_name") else f"{pipeline.label}+{settings['acquire']['name']}"
    logger = _make_logger(cfg, out_dir, run_name)
    folder = out_dir / "rounds"
    monitor = "val_acc"
    world = 1
    for r in range(start, num_rounds + 1):
        if pending is None:
            labels = np.full(n, -1, dtype=np.int64)
            labels[labelled] = revealed
            pl.seed_everything(_round_seed(int(cfg.seed), r), workers=True, verbose=False)
            module = build_module(cfg, meta)
            monitor = module.task.monitor
            start_weights = weights
            if settings.get("warm_start") and weights is not None:
                module.model.load_state_dict(weights)
            train_pipeline = build_pipeline(cfg)
            dm = SelectionDataModule(source, train_pipeline, out_dir=out_dir, base_ids=labelled, labels=labels, round=r, **loader_settings(cfg))
            recorder = RunRecorder(None, [], dm, monitor=monitor)
            trainer = build_trainer(cfg, out_dir, [recorder], logger, max_epochs=settings["epochs_per_round"], enable_checkpointing=False)
            epochs = round_epochs(settings, int(labelled.shape[0]), int(cfg.data.batch_size), trainer.world_size)
            trainer.fit_loop.max_epochs = epochs
            if epochs > int(settings["epochs_per_round"]) and trainer.check_val_every_n_epoch:
                # as many validations a round as its configured epochs would make: the interval stretches with the epochs
                trainer.check_val_every_n_epoch *= math.ceil(epochs / int(settings["epochs_per_round"]))
            trainer.fit(module, datamodule=dm)
            if trainer.interrupted or trainer.state.status.value != "finished":
                raise SelectkitError(f"round {r}: training did not finish; no summary.json was written")
            if recorder.rows and monitor not in recorder.rows[-1] and dm.val_ds is not None:
                trainer.validate(module, datamodule=dm, verbose=False)
            world = trainer.world_size
            writer = trainer.is_global_zero

            budget = round_budget(settings, r, labelled.shape[0])
            unlabelled = np.setdiff1d(np.arange(n, dtype=np.int64), labelled)
            if budget > unlabelled.shape[0]:
                raise ConfigError(f"rounds.budget: round {r} asks for {budget} items, only {unlabelled.shape[0]} are unlabelled")
            acquire_s, out_meta = 0.0, {}
            queried, scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            if budget > 0:
                acquisition = build_acquisition(cfg, settings, budget)
                controller = SelectionController(acquisition, labels, dm.train_ds.features, base_ids=unlabelled, rows=n, labelled_ids=labelled)
                controller.round = r
                scorer = PoolScorer(module.adapter, dm.train_ds, batch_size=int((cfg.get("providers") or {}).get("batch_size", 1024)), device=module.device, memory_cap_gb=float((cfg.get("providers") or {}).get("memory_cap_gb", 4.0)), seed=int(cfg.seed))
                scorer.round = r
                controller.model_outputs = model_providers(scorer, module.task)
                out = controller.output(0)
                queried = out.ids.astype(np.int64)
                if queried.shape[0] != budget or np.unique(queried).shape[0] != budget or np.intersect1d(queried, labelled).size:
                    raise SelectkitError(f"rounds.acquire: {settings['acquire']['name']} returned {queried.shape[0]} ids (budget {budget}), some repeated or already labelled")
                scores = out.scores.get("scores", np.full(queried.shape[0], np.nan, dtype=np.float32)).astype(np.float32)
                acquire_s, out_meta = controller.select_s, out.meta
            val = {k: v for k, v in module.last_val.items() if isinstance(v, (int, float))}
            row = {
                "round": r,
                "labelled": int(labelled.shape[0]),
                "queried": int(queried.shape[0]),
                **{k: float(v) for k, v in val.items()},
                "train_s": round(recorder.train_s, 4),
                "select_s": round(dm.controller.select_s + acquire_s, 4),
                "acquire_s": round(acquire_s, 4),
                "epochs": len(recorder.rows),
            }
            weights = {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
            pending = {"round": r, "ids": torch.from_numpy(queried), "scores": torch.from_numpy(scores), "row": row,
                       "val": dict(module.last_val), "meta": out_meta, "epoch_rows": list(recorder.rows), "monitor": monitor}
            if writer:
                save_state(state_path, state_now(r, pending))
        queried = pending["ids"].numpy().astype(np.int64)
        scores = pending["scores"].numpy().astype(np.float32)
        row, monitor = dict(pending["row"]), pending.get("monitor", monitor)
        got = _ask(oracle, queried, r, meta.get("num_classes"), out_dir, state_path) if queried.size else np.zeros(0, dtype=np.int64)
        epoch_rows += _continued(epoch_rows, history, pending["epoch_rows"], r, int(labelled.shape[0]))
        history.append(row)
        if writer:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / f"round_{r:03d}.json", {**row, "queried_ids": queried.tolist(), "scores": scores.tolist(), "labels": got.tolist(), "val": pending["val"], "meta": pending["meta"]})
            atomic_savez(folder / f"round_{r:03d}.npz", ids=queried, scores=scores, labels=got)
            atomic_write_jsonl(out_dir / "rounds.jsonl", history)
            atomic_write_jsonl(out_dir / "metrics.jsonl", epoch_rows)
        if logger is not None:
            logger.log_metrics({f"round/{k}": float(v) for k, v in row.items() if k != "round"} | {"round": r})
        order = np.argsort(np.concatenate([labelled, queried]), kind="stable")
        labelled = np.concatenate([labelled, queried])[order]
        revealed = np.concatenate([revealed, got])[order]
        pending = None
        if writer:
            save_state(state_path, state_now(r + 1, None))
        if queried.size == 0:
            break

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
        "strategy": _strategy(settings),
        "seed": int(cfg.seed),
        "dataset": meta.get("name"),
        "train_size": n,
        "world_size": world,
        "rounds": history,
        "labels_used": int(history[-1]["labelled"]) if history else int(labelled.shape[0]),
        "initial": int(history[0]["labelled"]) if history else int(labelled.shape[0]),
        "budget": settings["budget"],
        "total_budget": settings.get("total_budget"),
        "targets": targets,
        "train_s": round(sum(h["train_s"] for h in history), 4),
        "select_s": round(sum(h["select_s"] for h in history), 4),
        "initial_s": initial_s,
        "final": dict(history[-1]) if history else {},
        "monitor": monitor,
        f"best_{monitor}": max(values) if values else None,
        "time_to_target": time_to_target,
        "epochs": len(epoch_rows),
    }
    if writer:
        atomic_write_json(out_dir / "summary.json", summary)
        if logger is not None and cfg.logger.name == "wandb":
            _finish_wandb(logger, out_dir, summary, cfg.logger.get("log_manifest", True))
    return summary


def _strategy(settings: Mapping[str, Any]) -> str:
    """A short label of the acquisition strategy: the acquisition's name and settings, and the initial
    selector's name when there is one (what ``selectkit-report`` groups seeds by)."""
    acquire = settings["acquire"]
    extra = ",".join(f"{k}={v}" for k, v in sorted(acquire.items()) if k != "name")
    label = acquire["name"] + (f"({extra})" if extra else "")
    select = settings["initial"].get("select")
    return f"{label}, initial set by {select['name']}" if select else label
