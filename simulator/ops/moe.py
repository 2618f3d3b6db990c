"""The ops a mixture-of-experts layer needs: the router's softmax, permuting tokens to
their experts and back, and one grouped GEMM for all of a rank's experts.

Same contract as :mod:`simulator.ops.functional`: each op computes its result on
numpy arrays (or only its shape on :class:`~simulator.ops.arrays.ShapeArray`)
and records one kernel with its GEMM FLOPs and the bytes it reads and writes.

* :func:`softmax` over the experts' logits (the router of Shazeer et al. 2017,
  eq. 3, and of the Switch Transformer, Fedus et al. 2021, eq. 1);
* :func:`gather_rows` and :func:`scatter_add_rows`: a *permutation* gathers the
  rows of the tokens routed to each expert into one contiguous block per
  expert, and its inverse adds every expert's output rows back into their
  tokens' places (Megatron-Core's ``permute`` and ``unpermute``). They are
  copies, not GEMMs;
* :func:`grouped_matmul`: the GEMMs of several experts as one kernel, each
  expert's block of rows times its own weight, as Megatron-Core's
  ``GroupedMLP`` (the CUTLASS grouped GEMM) runs them. Its FLOPs are the sum of
  the experts' ``2 n_e k m``: an expert that receives twice the tokens does
  twice the work.

A shape-only run has no numbers to route by: its routing comes from a rule
(:mod:`simulator.nn.moe`), and these ops then see only how many rows each
expert gets (``rows`` is a count instead of an index array).
"""

from __future__ import annotations

import numpy as np

from .arrays import Array, ShapeArray, dtype_of, is_shape_only
from .basic import bytes_moved, elementwise, emit

#: The rows of an array a permutation picks: their indices, or (shape-only) their number.
Rows = np.ndarray | int


def count(rows: Rows) -> int:
    """How many rows ``rows`` picks."""
    return rows if isinstance(rows, int) else len(rows)


def softmax(x: Array, name: str = "router.softmax") -> Array:
    """Softmax over the last axis."""

    def fn(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return elementwise(name, "normalization", fn, x)


def softmax_backward(dp: Array, p: Array, name: str = "router.softmax_backward") -> Array:
    """Gradient of :func:`softmax` from its output: ``p * (dp - sum_j dp_j p_j)``."""

    def grad(g: np.ndarray, q: np.ndarray) -> np.ndarray:
        return q * (g - (g * q).sum(axis=-1, keepdims=True))

    return elementwise(name, "normalization", grad, dp, p)


def gather_rows(x: Array, rows: Rows, name: str = "permute") -> Array:
    """``x[rows]``: the rows of a ``(n, h)`` array in the order ``rows`` lists them."""
    shape = (count(rows), *x.shape[1:])
    out: Array = ShapeArray(shape, dtype_of(x)) if is_shape_only(x) else x[rows]
    emit(name, "elementwise", dtype_of(x), 0, 2 * out.nbytes + bytes_moved(rows))
    return out


def scatter_add_rows(y: Array, rows: Rows, n: int, name: str = "unpermute") -> Array:
    """An ``(n, h)`` array of zeros with ``y[i]`` added to row ``rows[i]`` (a row named
    twice gets both): the inverse of :func:`gather_rows`, summing what comes back."""
    shape = (n, *y.shape[1:])
    if is_shape_only(y):
        out: Array = ShapeArray(shape, dtype_of(y))
    else:
        out = np.zeros(shape, dtype=y.dtype)
        np.add.at(out, rows, y)
    emit(name, "elementwise", dtype_of(y), 0, bytes_moved(y, out, rows))
    return out


def scale_rows(x: Array, g: Array, name: str = "gate") -> Array:
    """``x * g[:, None]``: every row of ``x`` times its gate."""
    out: Array = ShapeArray(x.shape, dtype_of(x)) if is_shape_only(x) else x * g[:, None]
    emit(name, "elementwise", dtype_of(x), 0, bytes_moved(x, g, out))
    return out


def row_dot(a: Array, b: Array, name: str = "row_dot") -> Array:
    """``sum(a * b, axis=-1)``: one number per row (a gate's gradient)."""
    rows = (a.shape[0],)
    out: Array = ShapeArray(rows, dtype_of(a)) if is_shape_only(a) else (a * b).sum(axis=-1)
    emit(name, "elementwise", dtype_of(a), 0, bytes_moved(a, b, out))
    return out


def _blocks(sizes: list[int]) -> list[tuple[int, int]]:
    """Row ranges of consecutive blocks of ``sizes`` rows."""
    out, lo = [], 0
    for n in sizes:
        out.append((lo, lo + n))
        lo += n
    return out


def grouped_matmul(
    x: Array, sizes: list[int], ws: list[Array], name: str = "grouped_gemm", transpose: bool = False
) -> Array:
    """Rows ``lo_e .. hi_e`` of ``x`` (the ``e``-th block of ``sizes``) times ``ws[e]``
    (``ws[e]^T`` with ``transpose``), for every expert, as one kernel whose FLOPs are the
    sum of the products' (module docstring)."""
    if len(sizes) != len(ws) or sum(sizes) != x.shape[0]:
        raise ValueError(f"{name}: {len(ws)} weights for blocks {sizes} of {x.shape[0]} rows")
    k = x.shape[-1]
    n = ws[0].shape[0] if transpose else ws[0].shape[1]
    for w in ws:
        if (w.shape[1] if transpose else w.shape[0]) != k:
            raise ValueError(f"{name}: rows of width {k} and a weight {w.shape} do not multiply")
    if is_shape_only(x):
        out: Array = ShapeArray((x.shape[0], n), dtype_of(x))
    else:
        out = np.empty((x.shape[0], n), dtype=x.dtype)
        for (lo, hi), w in zip(_blocks(sizes), ws, strict=True):
            out[lo:hi] = x[lo:hi] @ (w.T if transpose else w)
    weights = sum(w.nbytes for w, rows in zip(ws, sizes, strict=True) if rows)
    emit(name, "gemm", dtype_of(x), 2 * x.shape[0] * k * n, x.nbytes + weights + out.nbytes)
    return out


def grouped_weight_grads(
    x: Array, dy: Array, sizes: list[int], name: str = "grouped_dW"
) -> list[Array]:
    """``x_e^T dy_e`` for every expert's block of rows, as one kernel: the experts'
    weight gradients (an expert without rows gets zeros)."""
    shape = (x.shape[-1], dy.shape[-1])
    outs: list[Array] = []
    for lo, hi in _blocks(sizes):
        if is_shape_only(x):
            outs.append(ShapeArray(shape, dtype_of(x)))
        else:
            outs.append(x[lo:hi].T @ dy[lo:hi])
    written = sum(o.nbytes for o, rows in zip(outs, sizes, strict=True) if rows)
    flops = 2 * x.shape[0] * shape[0] * shape[1]
    emit(name, "gemm", dtype_of(x), flops, x.nbytes + dy.nbytes + written)
    return outs
