"""selectkit: plugin-based pipelines for data subset selection.

The contract lives here: `Selection` (what a selector returns), `Selector` (the base class of every
plugin), `Pipeline` (stages chained on a schedule), the registry of installed selectors, the
`SelectionSampler` that feeds PyTorch Lightning, and the FAISS neighbour layer.
"""

from selectkit.errors import ConfigError, DataNotFoundError, SelectionError, SelectkitError
from selectkit.pipeline import Pipeline, Stage
from selectkit.selection import Selection, Synthetic
from selectkit.selector import Pool, SelectContext, Selector

__version__ = "0.1.0"

__all__ = [
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
    "__version__",
]
