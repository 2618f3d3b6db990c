"""Layers with explicit forward/backward, models, losses, optimizers and data."""

from .attention import AttentionCore
from .combinators import Residual, Sequential
from .cross_entropy import CrossEntropyLoss
from .dropout import Dropout
from .embedding import Embedding, TiedLogits
from .gpt import GPTConfig, Head
from .layers import GELU, Layer, Linear, ReLU
from .loss import MSELoss
from .models import MLPConfig, Model
from .norm import LayerNorm
from .optim import SGD, Adam, Optimizer, make_optimizer
from .param import Param
from .transformer import TransformerLayer

__all__ = [
    "GELU",
    "SGD",
    "Adam",
    "AttentionCore",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "GPTConfig",
    "Head",
    "Layer",
    "LayerNorm",
    "Linear",
    "MLPConfig",
    "MSELoss",
    "Model",
    "Optimizer",
    "Param",
    "ReLU",
    "Residual",
    "Sequential",
    "TiedLogits",
    "TransformerLayer",
    "make_optimizer",
]
