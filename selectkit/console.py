"""What a run prints: selectkit's own lines, one progress bar, and no third-party tips or noise.

`quiet_third_party` lowers Lightning's informational logging to warnings (its accelerator summary and
product tips), and the Hugging Face libraries' (sentence-transformers announces every model it loads;
Hydra's logging setup would otherwise print those INFO lines on the console), silences W&B's banner (its offline run still lands in ``<run>/wandb``), and filters the
deprecation and advice warnings that libraries emit about their own internals. Warnings about the
user's settings or data still show.

`RUN_LOG` (``selectkit.run``) is the run's own log: its start, one line per epoch, and the line that
ends it (``done``, ``waiting for labels`` or ``error``). Hydra's job logging
(``conf/hydra/job_logging/selectkit.yaml``) writes it to ``<run>/train.log`` only; `say` prints a
console line and logs it there too.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any, Callable

#: the run's own log lines (``<run>/train.log`` under ``selectkit-train``)
RUN_LOG = logging.getLogger("selectkit.run")

#: warning messages (regular expressions) that concern a library's internals, not the user's run
_NOISE = (
    r".*isinstance\(treespec, LeafSpec\).*",
    r"The number of training batches .* is smaller than the logging interval.*",
    r".*does not have many workers which may be a bottleneck.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*`training_step` returned `None`.*",
    r".*It is recommended to use `self\.log\(.*sync_dist=True\)`.*",
)


def quiet_third_party() -> None:
    """Apply the console policy above (idempotent)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning", "sentence_transformers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("WANDB_SILENT", "true")
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def say(line: str, *, error: bool = False) -> None:
    """Print one of ``selectkit-train``'s console lines (on stderr when ``error``) and log it to
    `RUN_LOG` (at ERROR level when ``error``) when that has a handler of its own (Hydra's job
    logging gives it ``train.log``; without one the line would reach the console twice)."""
    print(line, file=sys.stderr if error else sys.stdout, flush=True)
    if RUN_LOG.handlers:
        RUN_LOG.log(logging.ERROR if error else logging.INFO, line)


def entry_point(prog: str, app: Any, config_name: str, prepare: Callable[[list[str]], list[str]] | None = None) -> None:
    """The console entry of a selectkit Hydra app (``selectkit-train``, ``selectkit-select``).

    Prefers passive OpenMP waits before torch loads (`selectkit.threads`), lets modules of the folder
    the command runs from be named by ``_target_`` (a user's own project), rewrites the command line
    with ``prepare`` when given, refuses an unknown selector and any setting that does not compose
    with one line and exit code 2 (before Hydra runs), then runs ``app``.
    """
    from selectkit.threads import prefer_passive_waits

    prefer_passive_waits()
    from selectkit.errors import ConfigError
    from selectkit.schema import check_selector_choice, precheck

    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        if prepare is not None:
            sys.argv[1:] = prepare(sys.argv[1:])
        check_selector_choice(sys.argv[1:])
        precheck(["--config-name", config_name, *sys.argv[1:]])
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    app()
