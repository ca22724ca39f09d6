"""selectkit: plugin-based pipelines for data subset selection.

The contract lives here: the result kinds a selector returns (`Selection`, `Acquisition`, `Tuples`),
`Selector` (the base class of every plugin), `Pipeline` (stages chained on a schedule), the registry of
installed selectors and their generated config schemas, data sources, tasks, model-output providers,
training hooks, the samplers that feed PyTorch Lightning, and the neighbour layer.
"""

from selectkit.errors import ConfigError, DataNotFoundError, SelectionError, SelectkitError
from selectkit.pipeline import Pipeline, Stage
from selectkit.selection import Acquisition, Selection, Synthetic, Tuples
from selectkit.selector import Pool, SelectContext, Selector

__version__ = "0.1.0"

__all__ = [
    "Acquisition",
    "ConfigError",
    "DataNotFoundError",
    "Pipeline",
    "Pool",
    "SelectContext",
    "Selection",
    "SelectionError",
    "Selector",
    "SelectkitError",
    "Stage",
    "Synthetic",
    "Tuples",
    "__version__",
]
