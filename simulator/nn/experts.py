"""Experts: many small MLPs, each on the tokens routed to it, and their outputs combined.

After the router (:mod:`simulator.nn.routing`) has chosen, the tokens are
*permuted* into one buffer, expert by expert (:func:`dispatch`); every expert
runs its MLP on its block of rows -- all of them as one grouped GEMM per weight,
as Megatron-Core's ``GroupedMLP`` does (:func:`experts_forward`); and the
outputs are *combined*: every row is weighted by its gate and added into its
token's place (:func:`combine`), so a token's output is ``sum_e gate_e(x)
E_e(x)`` over its chosen experts (Shazeer et al. 2017, eq. 1; Fedus et al.
2021, eq. 2).

An expert is the model's MLP at size ``f``: GELU (GPT) or SwiGLU (Llama,
Mixtral, DeepSeek; its first GEMM computes the gate and the value together,
``2f`` columns), without biases (Mixtral's and DeepSeek's experts have none).
What the experts keep for their backward is the permuted input, the first
GEMM's output and the activation, each ``rows x`` its width: a token routed
to ``k`` experts is stored ``k`` times.

These functions take the experts' weights as lists, so the expert-parallel
layer (:mod:`simulator.parallel.expert`) runs the same code on the experts a
rank holds, and on their tensor-parallel shards.
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ..ops import llama as ops_llama
from ..ops import moe as ops_moe
from ..ops.arrays import Array
from .param import Param
from .routing import Routed


def activation(x: Array, gated: bool) -> Array:
    """SwiGLU on ``[gate | up]`` or GELU."""
    return ops_llama.swiglu(x) if gated else ops.gelu(x)


def activation_backward(dy: Array, x: Array, gated: bool) -> Array:
    return ops_llama.swiglu_backward(dy, x) if gated else ops.gelu_backward(dy, x)


def dispatch(x: Array, routed: Routed, name: str) -> Array:
    """The tokens' rows, expert-major: the input of :func:`experts_forward`."""
    return ops_moe.gather_rows(x, routed.rows, name=f"{name}.permute")


def undispatch(dx: Array, routed: Routed, name: str) -> Array:
    """B of :func:`dispatch`: every row's gradient added into its token's place."""
    return ops_moe.scatter_add_rows(dx, routed.rows, routed.n, name=f"{name}.permute.dx")


def experts_forward(
    x: Array, sizes: list[int], fc1: list[Param], fc2: list[Param], gated: bool, name: str
) -> tuple[Array, Any]:
    """Expert ``e`` on rows ``sizes[0] + ... + sizes[e-1]`` onwards of ``x``."""
    w1 = [p.value for p in fc1]
    pre = ops_moe.grouped_matmul(x, sizes, w1, name=f"{name}.fc1")
    act = activation(pre, gated)
    y = ops_moe.grouped_matmul(act, sizes, [p.value for p in fc2], name=f"{name}.fc2")
    return y, (x, pre, act, sizes)


def experts_backward_input(
    dy: Array, ctx: Any, fc1: list[Param], fc2: list[Param], gated: bool, name: str
) -> tuple[Array, Any]:
    """B: the rows' input gradients, and what :func:`experts_backward_weight` needs."""
    x, pre, act, sizes = ctx
    w2 = [p.value for p in fc2]
    dact = ops_moe.grouped_matmul(dy, sizes, w2, name=f"{name}.fc2.dx", transpose=True)
    dpre = activation_backward(dact, pre, gated)
    w1 = [p.value for p in fc1]
    dx = ops_moe.grouped_matmul(dpre, sizes, w1, name=f"{name}.fc1.dx", transpose=True)
    return dx, (x, dpre, act, dy, sizes)


def experts_backward_weight(wctx: Any, fc1: list[Param], fc2: list[Param], name: str) -> None:
    """W: every expert's two weight gradients, one grouped GEMM each."""
    x, dpre, act, dy, sizes = wctx
    for p, g in zip(
        fc1, ops_moe.grouped_weight_grads(x, dpre, sizes, f"{name}.fc1.dW"), strict=True
    ):
        p.accumulate(g)
    for p, g in zip(
        fc2, ops_moe.grouped_weight_grads(act, dy, sizes, f"{name}.fc2.dW"), strict=True
    ):
        p.accumulate(g)


def combine(y: Array, routed: Routed, name: str) -> tuple[Array, Any]:
    """``out[t] = sum over t's rows of gate * y[row]``: the gates weight the experts'
    outputs, which return to their tokens' places."""
    weighted = ops_moe.scale_rows(y, routed.gates, name=f"{name}.gate")
    out = ops_moe.scatter_add_rows(weighted, routed.rows, routed.n, name=f"{name}.unpermute")
    return out, (y, routed)


def combine_backward(dout: Array, ctx: Any, name: str) -> tuple[Array, Array]:
    """B of :func:`combine`: the rows' output gradients and the gates' gradients."""
    y, routed = ctx
    drow = ops_moe.gather_rows(dout, routed.rows, name=f"{name}.unpermute.dx")
    dy = ops_moe.scale_rows(drow, routed.gates, name=f"{name}.gate.dx")
    dgates = ops_moe.row_dot(drow, y, name=f"{name}.gate.dgates")
    return dy, dgates
