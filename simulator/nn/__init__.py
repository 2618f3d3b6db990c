"""Single-device training in numpy: layers, models, losses, optimizers and data.
It knows no strategy; everything parallel builds on it from above.

* :mod:`.layers` -- the layer protocol, ``y, ctx = forward(x)``,
  ``dx, wctx = backward_input(dy, ctx)``, ``backward_weight(wctx)`` (docs/design.md,
  key decision 1), and :class:`Linear`, :class:`ReLU`, :class:`GELU`,
  :class:`SwiGLU`;
* :mod:`.combinators` -- :class:`Sequential` and :class:`Residual`, whose mixins
  also serve the tensor-parallel blocks;
* the transformer's parts: :mod:`.norm`, :mod:`.attention`, :mod:`.dropout`,
  :mod:`.embedding`, :mod:`.transformer`; the losses :mod:`.loss` and
  :mod:`.cross_entropy`; parameters (:mod:`.param`) and optimizers
  (:mod:`.optim`);
* the models: :mod:`.config` (:class:`~.config.ModelConfig`, the contract every
  model kind keeps), :mod:`.models` (the MLP), :mod:`.gpt`, :mod:`.llama`
  (the same layer with RMSNorm, grouped-query attention, RoPE and SwiGLU),
  :mod:`.abstract` (stage times only); the papers' models by name
  (:mod:`.named`) and their closed forms (:mod:`.accounting`); their data:
  :mod:`.data`, :mod:`.text`, and the micro-batch context dropout reads
  (:mod:`.context`).
"""

from .attention import AttentionCore
from .combinators import Residual, Sequential
from .cross_entropy import CrossEntropyLoss
from .dropout import Dropout
from .embedding import Embedding, OutputLogits, TiedLogits
from .gpt import GPTConfig, Head
from .layers import GELU, Layer, Linear, ReLU, SwiGLU
from .llama import LlamaConfig
from .loss import MSELoss
from .models import MLPConfig, Model
from .norm import LayerNorm, RMSNorm
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
    "LlamaConfig",
    "MLPConfig",
    "MSELoss",
    "Model",
    "Optimizer",
    "OutputLogits",
    "Param",
    "RMSNorm",
    "ReLU",
    "Residual",
    "Sequential",
    "SwiGLU",
    "TiedLogits",
    "TransformerLayer",
    "make_optimizer",
]
