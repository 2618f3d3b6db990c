"""The op vocabulary: numpy math that also reports what it costs.

Every op computes its result (on numpy arrays) or just its result's shape (on
:class:`~simulator.ops.arrays.ShapeArray`), and records one
:class:`~simulator.ops.tape.Kernel` with

* **FLOPs**: GEMM FLOPs only, ``2 m n k`` for an ``(m, k) @ (k, n)`` product,
  as the Megatron-LM (Narayanan et al. 2021, sec. 5.1) and Korthikanti et al.
  (2022, appendix A) formulas count them; other ops are memory-bound and
  count zero;
* **bytes moved**: every input read once and every output written once.

The engine's roofline (:mod:`simulator.engine.cost`) turns that into time.
Layers must compute only through these ops so that numerics and shape-only
mode share one code path.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import ITEMSIZE, Array, ShapeArray, broadcast_shapes, dtype_of, is_shape_only
from .tape import Kernel, record


def emit(
    name: str,
    op_class: str,
    dtype: str,
    flops: float,
    nbytes: float,
    model: float | None = None,
    shape: tuple[int, int, int, int] | None = None,
) -> None:
    """Record a kernel on the active tape (for ops defined outside this module);
    ``model``: the FLOPs the model's formula counts, if not ``flops``
    (:attr:`~simulator.ops.tape.Kernel.model`); ``shape``: a GEMM's ``(batch, m, n,
    k)``."""
    record(
        Kernel(name, op_class, dtype, float(flops), float(nbytes), model=_float(model), shape=shape)
    )


def _float(x: float | None) -> float | None:
    return None if x is None else float(x)


def fixed(name: str, seconds: float) -> None:
    """A kernel of known duration, for timing-only (abstract) models."""
    record(Kernel(name, "fixed", "float32", 0.0, 0.0, seconds))


def _out(shape: tuple[int, ...], dtype: str) -> ShapeArray:
    return ShapeArray(shape, dtype)


def bytes_moved(*arrays: Array | float) -> int:
    """Bytes of the arrays among ``arrays`` (scalars move nothing): each read or written once."""
    return sum(int(a.nbytes) for a in arrays if hasattr(a, "nbytes"))


def matmul(
    a: Array, b: Array, name: str = "matmul", dtype: str | None = None, credit: float = 1.0
) -> Array:
    """``a @ b`` with numpy broadcasting of leading (batch) dimensions.

    FLOPs: ``2 * batch * m * n * k``. ``dtype`` is the precision the GEMM runs
    in, when not its inputs' (``fp8``: Transformer Engine's FP8 GEMMs, see
    :func:`cast`); it picks the peak FLOP/s and the bytes of the inputs, never
    the numbers, which stay the inputs' dtype's. ``credit`` is the share of
    the FLOPs the model's formula counts (less than 1 for work that other
    ranks repeat, such as replicated key-value heads).
    """
    m, k = a.shape[-2], a.shape[-1]
    if b.shape[-2] != k:
        raise ValueError(f"{name}: shapes {a.shape} and {b.shape} do not multiply")
    n = b.shape[-1]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    # an FP8 copy as one input (a weight gradient from the stashed copy) still gives
    # a result in the other input's precision
    out_dtype = dtype_of(b) if dtype_of(a) == "fp8" else dtype_of(a)
    out = _out((*batch, m, n), out_dtype) if is_shape_only(a) else a @ b
    nbytes = bytes_moved(a, b, out)
    if dtype is not None and dtype != out_dtype:
        # the inputs are read at the GEMM's precision, the output written at the model's
        nbytes = (a.size + b.size) * ITEMSIZE[dtype] + out.size * ITEMSIZE[out_dtype]
    flops = 2 * math.prod(batch) * m * n * k
    model = None if credit == 1.0 else flops * credit
    emit(name, "gemm", dtype or out_dtype, flops, nbytes, model, (math.prod(batch), m, n, k))
    return out


def cast(x: Array, dtype: str, name: str = "cast") -> Array:
    """``x`` quantised to ``dtype`` for a low-precision GEMM (a memory-bound kernel).

    Transformer Engine runs a linear layer's GEMMs in FP8 on FP8 copies of their
    inputs, and keeps the FP8 copy of the input for the weight gradient
    (Micikevicius et al. 2022, "FP8 Formats for Deep Learning", sec. 4; NVIDIA
    Transformer Engine, ``te.Linear``). The simulator's numbers stay in the
    model's dtype (float64 in numerics mode): the copy *is* ``x`` there, and only
    shape-only arrays take the new dtype, so memory and time see FP8 and the
    math does not.
    """
    out = ShapeArray(x.shape, dtype) if is_shape_only(x) else x
    emit(name, "elementwise", dtype, 0, x.nbytes + x.size * ITEMSIZE[dtype])
    return out


def elementwise(name: str, op_class: str, fn, *inputs: Array, dtype: str | None = None) -> Array:
    """Apply ``fn`` elementwise (with broadcasting) and record a memory-bound kernel.

    Shared by the op modules (:mod:`simulator.ops.functional`) for their pointwise ops.
    """
    arrays = [x for x in inputs if hasattr(x, "shape")]
    out_dtype = dtype or dtype_of(arrays[0])
    if is_shape_only(arrays[0]):
        shape = broadcast_shapes(*(x.shape for x in arrays))
        out = _out(shape, out_dtype)
    else:
        out = fn(*inputs)
    emit(name, op_class, out_dtype, 0, bytes_moved(*arrays, out))
    return out


def add(a: Array, b: Array, name: str = "add") -> Array:
    return elementwise(name, "elementwise", np.add, a, b)


def sub(a: Array, b: Array, name: str = "sub") -> Array:
    return elementwise(name, "elementwise", np.subtract, a, b)


def mul(a: Array, b: Array, name: str = "mul") -> Array:
    return elementwise(name, "elementwise", np.multiply, a, b)


def scale(x: Array, c: float, name: str = "scale") -> Array:
    return elementwise(name, "elementwise", lambda v: v * c, x)


def sum_to_last(x: Array, name: str = "sum") -> Array:
    """Sum over every axis but the last (the bias gradient of a linear layer)."""
    dtype = dtype_of(x)
    if is_shape_only(x):
        out = _out((x.shape[-1],), dtype)
    else:
        out = x.reshape(-1, x.shape[-1]).sum(axis=0)
    emit(name, "elementwise", dtype, 0, bytes_moved(x, out))
    return out


def relu(x: Array) -> Array:
    return elementwise("relu", "elementwise", lambda v: np.maximum(v, 0), x)


def relu_backward(dy: Array, x: Array) -> Array:
    return elementwise("relu_backward", "elementwise", lambda g, v: g * (v > 0), dy, x)


_GELU_C = math.sqrt(2.0 / math.pi)


# ``v * v * v``, not ``v**3``: numpy's power of 3 calls the C library's ``pow`` per
# element, thirty times slower than two products (the cube differs in the last bit)
def _gelu(v: np.ndarray) -> np.ndarray:
    return 0.5 * v * (1.0 + np.tanh(_GELU_C * (v + 0.044715 * (v * v * v))))


def _gelu_grad(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    square = v * v
    inner = _GELU_C * (v + 0.044715 * (square * v))
    t = np.tanh(inner)
    d_inner = _GELU_C * (1.0 + 3 * 0.044715 * square)
    return g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * d_inner)


def gelu(x: Array) -> Array:
    """GELU, tanh approximation (Hendrycks and Gimpel 2016, eq. in sec. 2; as in GPT-2)."""
    return elementwise("gelu", "elementwise", _gelu, x)


def gelu_backward(dy: Array, x: Array) -> Array:
    return elementwise("gelu_backward", "elementwise", _gelu_grad, dy, x)


def mse(pred: Array, target: Array) -> Array:
    """Mean squared error over every element: ``mean((pred - target)^2)``."""
    dtype = dtype_of(pred)
    out = _out((), dtype) if is_shape_only(pred) else np.mean((pred - target) ** 2)
    emit("mse", "elementwise", dtype, 0, bytes_moved(pred, target))
    return out


def mse_backward(pred: Array, target: Array, grad_scale: float) -> Array:
    """Gradient of ``grad_scale * mse(pred, target)`` with respect to ``pred``."""
    factor = 2.0 * grad_scale / math.prod(pred.shape)
    return elementwise("mse_backward", "elementwise", lambda p, t: factor * (p - t), pred, target)
