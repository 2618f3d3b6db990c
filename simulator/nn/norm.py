"""Layer normalisation and RMSNorm, each stashing its input and nothing else.

``y = (x - mean) / sqrt(var + eps) * gamma + beta`` over the hidden axis (Ba
et al. 2016, "Layer Normalization", eq. 4 and sec. 3.1). Backward recomputes
the mean and the reciprocal standard deviation from the saved input instead
of keeping them, which is how Korthikanti et al. (2022, sec. 4.1) count a
layer norm: its input only, ``2sbh`` bytes in 16-bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ops import functional as ops_nn
from ..ops import llama as ops_llama
from ..ops.arrays import Array
from .layers import Layer, init_constant
from .param import Param


class LayerNorm(Layer):
    """Layer norm over the last axis with gain ``gamma`` (ones) and bias ``beta`` (zeros).

    B computes the input gradient; W the gain and bias gradients, so both
    need the input and the output gradient.
    """

    def __init__(
        self,
        name: str,
        width: int,
        rng: np.random.Generator | None,
        dtype: str,
        eps: float = 1e-5,
    ) -> None:
        self.name = name
        self.eps = eps
        self.gamma = Param(f"{name}.weight", init_constant(rng, (width,), 1.0, dtype))
        self.beta = Param(f"{name}.bias", init_constant(rng, (width,), 0.0, dtype))

    def parameters(self) -> list[Param]:
        return [self.gamma, self.beta]

    def forward(self, x: Array) -> tuple[Array, Any]:
        return ops_nn.layernorm(x, self.gamma.value, self.beta.value, self.eps), x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        dx = ops_nn.layernorm_backward(dy, ctx, self.gamma.value, self.eps)
        return dx, (ctx, dy)

    def backward_weight(self, wctx: Any) -> None:
        x, dy = wctx
        dgamma, dbeta = ops_nn.layernorm_weight_grad(dy, x, self.eps)
        self.gamma.accumulate(dgamma)
        self.beta.accumulate(dbeta)


class RMSNorm(Layer):
    """Root-mean-square norm over the last axis with gain ``gamma`` (ones) and no bias
    (Zhang and Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4; Llama's
    norm, Touvron et al. 2023, sec. 2.2).

    Like :class:`LayerNorm` it stashes its input only (``2sbh`` bytes in 16-bit):
    backward recomputes ``1 / rms`` from it (:func:`simulator.ops.llama.rmsnorm`).
    """

    def __init__(
        self,
        name: str,
        width: int,
        rng: np.random.Generator | None,
        dtype: str,
        eps: float = 1e-5,
    ) -> None:
        self.name = name
        self.eps = eps
        self.gamma = Param(f"{name}.weight", init_constant(rng, (width,), 1.0, dtype))

    def parameters(self) -> list[Param]:
        return [self.gamma]

    def forward(self, x: Array) -> tuple[Array, Any]:
        return ops_llama.rmsnorm(x, self.gamma.value, self.eps), x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        return ops_llama.rmsnorm_backward(dy, ctx, self.gamma.value, self.eps), (ctx, dy)

    def backward_weight(self, wctx: Any) -> None:
        x, dy = wctx
        self.gamma.accumulate(ops_llama.rmsnorm_weight_grad(dy, x, self.eps))
