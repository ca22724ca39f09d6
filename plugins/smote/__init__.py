"""The SMOTE family: SMOTE, Borderline-SMOTE, ADASYN, random over- and under-sampling.

Two faces over one implementation (`selectkit_plugins.smote.core`):

* selectkit selectors (registry names ``smote``, ``borderline_smote``, ``adasyn``, ``random_over``,
  ``random_under``) that return the pool plus synthetic samples with their provenance;
* imbalanced-learn compatible estimators (`SMOTE`, `BorderlineSMOTE`, `ADASYN`, `RandomOverSampler`,
  `RandomUnderSampler`) with ``fit_resample``.

Neighbour search goes through `selectkit.neighbors` (exact or approximate, set by ``neighbors``).
"""

from selectkit_plugins.smote.estimators import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler, RandomUnderSampler
from selectkit_plugins.smote.selectors import (
    ADASYNSelector,
    BorderlineSMOTESelector,
    RandomOverSelector,
    RandomUnderSelector,
    SMOTESelector,
)

__all__ = [
    "SMOTE",
    "BorderlineSMOTE",
    "ADASYN",
    "RandomOverSampler",
    "RandomUnderSampler",
    "SMOTESelector",
    "BorderlineSMOTESelector",
    "ADASYNSelector",
    "RandomOverSelector",
    "RandomUnderSelector",
]
