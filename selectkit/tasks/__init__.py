"""Tasks (the ``task`` config group): what the training loop optimises and how it validates.

* `Classification` (``task=classification``): weighted cross-entropy; accuracy, balanced accuracy,
  per-class recall.
"""

from selectkit.tasks.base import WEIGHT_NORMS, Task, combine
from selectkit.tasks.classification import Classification

__all__ = ["Classification", "Task", "WEIGHT_NORMS", "combine"]
