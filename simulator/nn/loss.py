"""Loss functions: ``loss, ctx = fn.forward(pred, target)``, ``dpred = fn.backward(ctx, scale)``.

``scale`` multiplies the gradient: a micro-batch's loss is the mean over its
samples, and the step's loss is the mean over the micro-batches, so each
micro-batch's backward starts from ``1 / microbatches`` (gradient
accumulation, as Megatron-LM and PyTorch do it).
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ..ops.arrays import Array


class MSELoss:
    """Mean squared error over every element (PyTorch's ``MSELoss()`` default)."""

    name = "mse"

    def forward(self, pred: Array, target: Array) -> tuple[Array, Any]:
        return ops.mse(pred, target), (pred, target)

    def backward(self, ctx: Any, scale: float) -> Array:
        pred, target = ctx
        return ops.mse_backward(pred, target, scale)
