"""Tasks (the ``task`` config group): what the training loop optimises and how it validates.

* `Classification` (``task=classification``): weighted cross-entropy; accuracy, balanced accuracy,
  per-class recall.
* `Contrastive` (``task=contrastive``): InfoNCE or triplet loss on tuples; retrieval recall@k and MRR.
"""

from selectkit.tasks.base import WEIGHT_NORMS, Task, combine
from selectkit.tasks.classification import Classification
from selectkit.tasks.contrastive import Contrastive

__all__ = ["Classification", "Contrastive", "Task", "WEIGHT_NORMS", "combine"]
