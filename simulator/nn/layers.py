"""Layers with explicit forward and backward and saved context.

``y, ctx = layer.forward(x)`` returns the output and everything backward will
need; ``dx = layer.backward(dy, ctx)`` returns the input gradient and
accumulates the parameter gradients. Nothing about a micro-batch is kept on
the layer, so many micro-batches can be in flight at once, and the arrays in
``ctx`` *are* the activation memory a pipeline stage stashes (docs/design.md, key
decision 1).

Backward splits in two, as zero-bubble schedules need (Qi et al. 2024,
sec. 2): ``backward_input`` (B) computes ``dx`` and returns what the weight
gradient needs, ``backward_weight`` (W) computes the parameter gradients.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from ..ops import llama as ops_llama
from ..ops.arrays import Array, ShapeArray
from ..ops.precision import linear_gemm_dtype
from .param import Param


class Layer:
    """Base class; subclasses implement forward, backward_input and backward_weight."""

    name = "layer"

    def parameters(self) -> list[Param]:
        return []

    def borrowed(self) -> list[Param]:
        """Parameters this layer uses but another layer owns (tied weights)."""
        return []

    def own_copy(self, param: Param) -> Param:
        """Stop borrowing ``param``: hold (and list) a copy of it instead.

        A pipeline that puts the two ends of a tied weight on different workers
        gives the borrowing end its own copy and keeps the two equal by adding
        their gradients before every update (Megatron-LM's embedding group).
        """
        raise TypeError(f"{self.name} borrows no parameters")

    def forward(self, x: Array) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        """B: the input gradient, plus the context ``backward_weight`` needs."""
        raise NotImplementedError

    def backward_weight(self, wctx: Any) -> None:
        """W: accumulate parameter gradients (nothing for layers without parameters)."""

    def backward(self, dy: Array, ctx: Any) -> Array:
        """B then W."""
        dx, wctx = self.backward_input(dy, ctx)
        self.backward_weight(wctx)
        return dx


def init_normal(
    rng: np.random.Generator | None, shape: tuple[int, ...], std: float, dtype: str
) -> Array:
    """Gaussian initial values, or a ShapeArray when ``rng`` is None (shape-only)."""
    if rng is None:
        return ShapeArray(shape, dtype)
    return rng.normal(0.0, std, size=shape).astype(dtype)


def init_constant(
    rng: np.random.Generator | None, shape: tuple[int, ...], value: float, dtype: str
) -> Array:
    if rng is None:
        return ShapeArray(shape, dtype)
    return np.full(shape, value, dtype=dtype)


class Linear(Layer):
    """``y = x @ W + b`` over the last axis; ``W`` is ``(in, out)``.

    Forward: one GEMM of ``2 N in out`` FLOPs for ``N`` rows. B: ``dx = dy W^T``
    (same FLOPs). W: ``dW = x^T dy`` (same FLOPs) and ``db = sum(dy)``.

    Under FP8 (:mod:`simulator.ops.precision`) the three GEMMs run at the FP8
    peak on FP8 copies of ``x`` and ``dy``, and the saved context is the FP8
    copy of ``x``: Transformer Engine's ``te.Linear``.
    """

    #: the share of its GEMM FLOPs the model's formula counts: less than 1 for a
    #: tensor-parallel shard whose columns other ranks hold too (replicated
    #: key-value heads, :mod:`simulator.parallel.tensor.grouped`)
    credit = 1.0

    def __init__(self, name: str, weight: Array, bias: Array | None) -> None:
        self.name = name
        self.weight = Param(f"{name}.weight", weight)
        self.bias = None if bias is None else Param(f"{name}.bias", bias)

    @classmethod
    def create(
        cls,
        name: str,
        fan_in: int,
        fan_out: int,
        rng: np.random.Generator | None,
        dtype: str,
        bias: bool = True,
        std: float | None = None,
    ) -> Linear:
        """He-style initialisation ``N(0, 2/fan_in)`` unless ``std`` is given."""
        std = math.sqrt(2.0 / fan_in) if std is None else std
        w = init_normal(rng, (fan_in, fan_out), std, dtype)
        b = init_constant(rng, (fan_out,), 0.0, dtype) if bias else None
        return cls(name, w, b)

    def parameters(self) -> list[Param]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def forward(self, x: Array) -> tuple[Array, Any]:
        fp8 = linear_gemm_dtype()
        if fp8 is not None:
            # Transformer Engine: the GEMM reads an FP8 copy of x, which is also what
            # the weight gradient keeps (:mod:`simulator.ops.precision`)
            x = ops.cast(x, fp8, name=f"{self.name}.cast")
        y = ops.matmul(x, self.weight.value, name=f"{self.name}", dtype=fp8, credit=self.credit)
        if self.bias is not None:
            y = ops.add(y, self.bias.value, name=f"{self.name}.bias")
        return y, x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        fp8 = linear_gemm_dtype()
        if fp8 is not None:
            dy = ops.cast(dy, fp8, name=f"{self.name}.dy.cast")
        dx = ops.matmul(
            dy, self.weight.value.T, name=f"{self.name}.dx", dtype=fp8, credit=self.credit
        )
        return dx, (ctx, dy)

    def backward_weight(self, wctx: Any) -> None:
        x, dy = wctx
        x2 = x.reshape(-1, x.shape[-1])
        dy2 = dy.reshape(-1, dy.shape[-1])
        fp8 = linear_gemm_dtype()
        dw = ops.matmul(x2.T, dy2, name=f"{self.name}.dW", dtype=fp8, credit=self.credit)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(ops.sum_to_last(dy, name=f"{self.name}.db"))


class ReLU(Layer):
    name = "relu"

    def forward(self, x: Array) -> tuple[Array, Any]:
        return ops.relu(x), x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        return ops.relu_backward(dy, ctx), None


class GELU(Layer):
    """GELU; saves its input, as Korthikanti et al. (2022, sec. 4.1) count it."""

    name = "gelu"

    def forward(self, x: Array) -> tuple[Array, Any]:
        return ops.gelu(x), x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        return ops.gelu_backward(dy, ctx), None


class SwiGLU(Layer):
    """The gated activation of a SwiGLU MLP: ``[gate | up] -> silu(gate) * up``
    (Shazeer 2020, eq. 6; :func:`simulator.ops.llama.swiglu`).

    It follows the MLP's first GEMM, which computes the gate and the value
    together (``2f`` columns), and halves the width. It saves its input, both
    halves, ``4sbf`` bytes in 16-bit: its backward needs the gate and the value.
    """

    name = "swiglu"
    #: the input is two halves, [gate | up], that a tensor-parallel split cuts alike
    gated = True

    def forward(self, x: Array) -> tuple[Array, Any]:
        return ops_llama.swiglu(x), x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        return ops_llama.swiglu_backward(dy, ctx), None
