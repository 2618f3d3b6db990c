"""Layout search and sweeps over many runs, on local processes or a Dask cluster."""

from .models import MODEL_PRESETS, ModelPreset, model_preset
from .space import SearchSpace

__all__ = ["MODEL_PRESETS", "ModelPreset", "SearchSpace", "model_preset"]
