"""Layout search and sweeps over many runs, on local processes or a Dask cluster.

* :func:`plan` enumerates every dp x tp x pp layout of a model on a cluster,
  rejects the invalid ones with the checks ``run`` applies and those whose
  memory estimate is over the device's memory, simulates the rest and ranks
  them (``python -m simulator plan``);
* :func:`sweep` runs a scenario over a grid of values
  (``python -m simulator sweep``).

Both return results with ``.to_frame()`` (a pandas DataFrame) for notebooks.
"""

from .model_presets import MODEL_PRESETS, ModelPreset, model_preset
from .results import PlanResult
from .search import plan
from .space import SearchSpace
from .sweep import SweepResult, sweep

__all__ = [
    "MODEL_PRESETS",
    "ModelPreset",
    "PlanResult",
    "SearchSpace",
    "SweepResult",
    "model_preset",
    "plan",
    "sweep",
]
