"""What a run prints: selectkit's own lines, one progress bar, and no third-party tips or noise.

`quiet_third_party` lowers Lightning's informational logging to warnings (its accelerator summary and
product tips), and the Hugging Face libraries' (sentence-transformers announces every model it loads;
Hydra's logging setup would otherwise print those INFO lines on the console), silences W&B's banner (its offline run still lands in ``<run>/wandb``), and filters the
deprecation and advice warnings that libraries emit about their own internals. Warnings about the
user's settings or data still show.
"""

from __future__ import annotations

import logging
import os
import warnings

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
