"""Hard-negative mining for contrastive and retrieval training.

`HardNegatives` (registry name ``hard_negatives``) mines (anchor, positive, negatives) tuples over the
whole pool through the neighbour layer: offline when its stage runs ``once``, dynamic (re-embedded and
re-indexed with the current model) when it runs every n epochs, and re-mined within epochs every n
training steps with ``remine_every_steps`` (`StepRemining`, its training hook). `mine` is the
memory-bounded mining routine both run, usable on any vectors.
"""

from selectkit_plugins.hard_negatives.mining import FILTERS, Mined, MiningSettings, mine
from selectkit_plugins.hard_negatives.remine import StepRemining
from selectkit_plugins.hard_negatives.selector import HardNegatives

__all__ = ["FILTERS", "HardNegatives", "Mined", "MiningSettings", "StepRemining", "mine"]
