"""The ops the Llama block adds: RMSNorm, the SwiGLU gate and rotary position embeddings.

Same contract as :mod:`simulator.ops.functional`: each op computes its result
on numpy arrays (or only its shape on
:class:`~simulator.ops.arrays.ShapeArray`) and records one memory-bound kernel
with the bytes it reads and writes; none of them is a GEMM.

* **RMSNorm** (Zhang and Sennrich 2019, "Root Mean Square Layer
  Normalization", eq. 4): ``y = x / rms(x) * g`` with ``rms(x) = sqrt(mean(x^2)
  + eps)`` over the hidden axis; no centring and no bias. Like layer norm, its
  backward recomputes ``1 / rms`` from the input, so it stashes the input only.
* **SwiGLU** (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6):
  ``FFN(x) = (Swish(x W) * (x V)) W2`` with ``Swish(z) = z sigmoid(z)``
  (SiLU). The gate ``x W`` and the value ``x V`` come out of one GEMM of ``2f``
  columns, ``[gate | up]``, as Megatron-Core's ``linear_fc1`` computes them
  (``gated_linear_unit``); :func:`swiglu` takes that ``(..., 2f)`` output and
  gives ``silu(gate) * up``, ``(..., f)``.
* **Rotary position embeddings** (Su et al. 2021, "RoFormer", sec. 3.4.2,
  eq. 34): the pair of coordinates ``(x_i, x_{i + d/2})`` of a query or key at
  position ``p`` is rotated by the angle ``p theta^(-2i/d)``, so that ``q_m .
  k_n`` depends on ``m - n`` only. The halves are paired as Megatron-Core and
  Hugging Face pair them (``rotate_half``), not interleaved. The rotation is
  orthogonal: its backward is the rotation by the opposite angle, and it needs
  nothing but the positions, so it stashes nothing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .arrays import Array, ShapeArray, dtype_of, is_shape_only
from .basic import bytes_moved, elementwise, emit

# -- RMSNorm ----------------------------------------------------------------------------------


def _rstd(x: np.ndarray, eps: float) -> np.ndarray:
    """``1 / sqrt(mean(x^2) + eps)`` over the last axis."""
    return 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)


def rmsnorm(x: Array, gamma: Array, eps: float) -> Array:
    """``y = x * rstd * gamma`` over the last axis (Zhang and Sennrich 2019, eq. 4)."""
    return elementwise("rmsnorm", "normalization", lambda v, g: v * _rstd(v, eps) * g, x, gamma)


def rmsnorm_backward(dy: Array, x: Array, gamma: Array, eps: float) -> Array:
    """Input gradient of :func:`rmsnorm`, from its input alone.

    With ``x_hat = x rstd`` and ``g = dy * gamma``:
    ``dx = rstd * (g - x_hat * mean(g * x_hat))``, the mean over the normalised axis.
    """

    def grad(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        rstd = _rstd(x, eps)
        x_hat = x * rstd
        g = dy * gamma
        return rstd * (g - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))

    return elementwise("rmsnorm_backward", "normalization", grad, dy, x, gamma)


def rmsnorm_weight_grad(dy: Array, x: Array, eps: float) -> Array:
    """Gain gradient of :func:`rmsnorm`: ``sum(dy * x_hat)`` over every axis but the last."""
    dtype, width = dtype_of(x), x.shape[-1]
    if is_shape_only(x):
        dgamma: Array = ShapeArray((width,), dtype)
    else:
        dgamma = (dy * x * _rstd(x, eps)).reshape(-1, width).sum(axis=0)
    emit("rmsnorm_weight_grad", "normalization", dtype, 0, bytes_moved(dy, x, dgamma))
    return dgamma


# -- SwiGLU -----------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _halves(x: Array) -> tuple[Array, Array]:
    f = x.shape[-1] // 2
    return x[..., :f], x[..., f:]


def swiglu(x: Array) -> Array:
    """``silu(gate) * up`` of a ``(..., 2f)`` array laid out ``[gate | up]``; ``(..., f)``."""
    if x.shape[-1] % 2:
        raise ValueError(f"swiglu needs an even last axis [gate | up], got {x.shape}")
    dtype = dtype_of(x)
    if is_shape_only(x):
        out: Array = ShapeArray((*x.shape[:-1], x.shape[-1] // 2), dtype)
    else:
        gate, up = _halves(x)
        out = gate * _sigmoid(gate) * up
    emit("swiglu", "elementwise", dtype, 0, bytes_moved(x, out))
    return out


def swiglu_backward(dy: Array, x: Array) -> Array:
    """Gradient of :func:`swiglu` w.r.t. its ``[gate | up]`` input:
    ``[dy * up * silu'(gate) | dy * silu(gate)]``, ``silu'(z) = s (1 + z (1 - s))``
    with ``s = sigmoid(z)``."""
    dtype = dtype_of(x)
    if is_shape_only(x):
        out: Array = ShapeArray(x.shape, dtype)
    else:
        gate, up = _halves(x)
        s = _sigmoid(gate)
        out = np.concatenate([dy * up * s * (1.0 + gate * (1.0 - s)), dy * gate * s], axis=-1)
    emit("swiglu_backward", "elementwise", dtype, 0, bytes_moved(dy, x, out))
    return out


# -- rotary position embeddings ---------------------------------------------------------------


@lru_cache(maxsize=64)
def rope_tables(first: int, n: int, d: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of the angles of positions ``first .. first+n-1``, ``(n, d)``,
    each frequency repeated over both halves (Su et al. 2021, eq. 34)."""
    cos, sin = position_tables(np.arange(first, first + n), d, theta)
    cos.flags.writeable = sin.flags.writeable = False
    return cos, sin


def position_tables(positions: np.ndarray, d: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos`` and ``sin`` of the angles of any ``positions``, ``(n, d)`` (Su et al.
    2021, eq. 34): ``p theta^(-2i/d)`` for the pair ``i``, repeated over both halves."""
    if d % 2:
        raise ValueError(f"rotary embeddings need an even head size, got {d}")
    freqs = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.outer(np.asarray(positions, dtype=np.float64), freqs)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles), np.sin(angles)


def _rotate_half(x: np.ndarray) -> np.ndarray:
    """``[-x2, x1]`` for the halves ``x1, x2`` of the last axis."""
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _rotate_half_t(x: np.ndarray) -> np.ndarray:
    """The transpose of :func:`_rotate_half`: ``[x2, -x1]``."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., half:], -x[..., :half]], axis=-1)


#: Where a rank's queries and keys sit: the first of consecutive positions, or each
#: position (a context-parallel rank holds two chunks of the sequence).
Positions = int | np.ndarray


def _tables(v: np.ndarray, theta: float, first: Positions) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(first, np.ndarray):
        cos, sin = position_tables(first, v.shape[-1], theta)
    else:
        cos, sin = rope_tables(first, v.shape[-2], v.shape[-1], theta)
    return cos.astype(v.dtype, copy=False), sin.astype(v.dtype, copy=False)


def rope(x: Array, theta: float, first: Positions = 0) -> Array:
    """Queries or keys ``(..., n, d)`` at positions ``first .. first+n-1``, rotated:
    ``x cos + rotate_half(x) sin`` (module docstring). ``first`` is non-zero for a
    rank that holds a later part of the sequence, or the array of the ``n``
    positions themselves (a context-parallel rank's two chunks)."""

    def fn(v: np.ndarray) -> np.ndarray:
        cos, sin = _tables(v, theta, first)
        return v * cos + _rotate_half(v) * sin

    return elementwise("rope", "elementwise", fn, x)


def rope_backward(dy: Array, theta: float, first: Positions = 0) -> Array:
    """Gradient of :func:`rope`: ``dy cos + rotate_half^T(dy sin)``, the inverse rotation."""

    def fn(g: np.ndarray) -> np.ndarray:
        cos, sin = _tables(g, theta, first)
        return g * cos + _rotate_half_t(g * sin)

    return elementwise("rope_backward", "elementwise", fn, dy)
