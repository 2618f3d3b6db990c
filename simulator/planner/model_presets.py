"""The named models ``plan --model NAME`` takes: :mod:`simulator.nn.named`'s.

They live beside the model configs because scenario files name them too
(``[model] name = "llama3-70b"``); the planner reads their published batch
and layout (GPU count) from here under its older names.
"""

from __future__ import annotations

from ..nn.named import NAMED_MODELS as MODEL_PRESETS
from ..nn.named import NamedModel as ModelPreset
from ..nn.named import named_model as model_preset

__all__ = ["MODEL_PRESETS", "ModelPreset", "model_preset"]
