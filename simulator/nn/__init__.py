"""Layers with explicit forward/backward, models, losses, optimizers and data."""

from .layers import GELU, Layer, Linear, ReLU, Sequential
from .loss import MSELoss
from .models import MLPConfig, Model
from .optim import SGD, Adam, Optimizer, make_optimizer
from .param import Param

__all__ = [
    "GELU",
    "SGD",
    "Adam",
    "Layer",
    "Linear",
    "MLPConfig",
    "MSELoss",
    "Model",
    "Optimizer",
    "Param",
    "ReLU",
    "Sequential",
    "make_optimizer",
]
