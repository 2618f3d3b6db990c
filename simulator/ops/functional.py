"""The ops a transformer needs beyond GEMMs and pointwise math.

Same contract as :mod:`simulator.ops`: each op computes its result on numpy
arrays (or only the result's shape on
:class:`~simulator.ops.arrays.ShapeArray`) and records one kernel with its GEMM
FLOPs -- zero for every op here, none of them is a matrix product -- and the
bytes it reads and writes. Softmax, layer norm and the cross-entropy are of
class ``normalization``, the rest ``elementwise``.

Several ops are *fused* the way Megatron-LM fuses them, because fusion decides
what backward must keep: the attention softmax takes the ``1/sqrt(d)`` scale
and the causal mask inside (so the scaled scores never exist as a separate
tensor), dropout writes its output and its mask in one kernel, and the
cross-entropy keeps the softmax in place of the logits. Layer-norm backward
recomputes the mean and the reciprocal standard deviation from the input, so
a layer norm stashes its input only (Korthikanti et al. 2022, sec. 4.1).
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import Array, ShapeArray, dtype_of, is_shape_only
from .basic import bytes_moved, elementwise, emit
from .loss_passes import BACKWARD_PASSES, FORWARD_PASSES, emit_passes, loss_dtype, unfused

# -- layer normalisation ----------------------------------------------------------------


def _normalized(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``x_hat = (x - mean) * rstd`` and ``rstd = 1 / sqrt(var + eps)`` over the last axis."""
    centered = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)
    return centered * rstd, rstd


def layernorm(x: Array, gamma: Array, beta: Array, eps: float) -> Array:
    """``y = x_hat * gamma + beta`` over the last axis (Ba et al. 2016, "Layer
    Normalization", eq. 4, with the gain and bias of sec. 3.1)."""
    dtype = dtype_of(x)
    if is_shape_only(x):
        out: Array = ShapeArray(x.shape, dtype)
    else:
        out = _normalized(x, eps)[0] * gamma + beta
    emit("layernorm", "normalization", dtype, 0, bytes_moved(x, gamma, beta, out))
    return out


def layernorm_backward(dy: Array, x: Array, gamma: Array, eps: float) -> Array:
    """Input gradient of :func:`layernorm`, from its input alone.

    With ``g = dy * gamma``: ``dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat))``,
    the means over the normalised axis.
    """

    def grad(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        x_hat, rstd = _normalized(x, eps)
        g = dy * gamma
        mean_g = g.mean(axis=-1, keepdims=True)
        mean_gx = (g * x_hat).mean(axis=-1, keepdims=True)
        return rstd * (g - mean_g - x_hat * mean_gx)

    return elementwise("layernorm_backward", "normalization", grad, dy, x, gamma)


def layernorm_weight_grad(dy: Array, x: Array, eps: float) -> tuple[Array, Array]:
    """Gain and bias gradients of :func:`layernorm`: ``sum(dy * x_hat)`` and ``sum(dy)``
    over every axis but the last."""
    dtype, width = dtype_of(x), x.shape[-1]
    if is_shape_only(x):
        dgamma: Array = ShapeArray((width,), dtype)
        dbeta: Array = ShapeArray((width,), dtype)
    else:
        x_hat = _normalized(x, eps)[0]
        dgamma = (dy * x_hat).reshape(-1, width).sum(axis=0)
        dbeta = dy.reshape(-1, width).sum(axis=0)
    emit("layernorm_weight_grad", "normalization", dtype, 0, bytes_moved(dy, x, dgamma, dbeta))
    return dgamma, dbeta


# -- attention ----------------------------------------------------------------------------


def causal_softmax(scores: Array, scale: float) -> Array:
    """Softmax over the last axis of ``scale * scores``, query ``i`` seeing keys ``j <= i``.

    The scaled dot-product attention of Vaswani et al. (2017, sec. 3.2.1, eq. 1)
    with the decoder's mask of future positions (sec. 3.2.3), fused into one
    kernel as Megatron-LM's scaled upper-triangular masked softmax does.
    """

    def fn(z: np.ndarray) -> np.ndarray:
        future = np.triu(np.ones(z.shape[-2:], dtype=bool), k=1)
        z = np.where(future, -np.inf, scale * z)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return elementwise("causal_softmax", "normalization", fn, scores)


def softmax_backward(dprobs: Array, probs: Array, scale: float) -> Array:
    """Gradient of :func:`causal_softmax` w.r.t. the unscaled scores, from its output:
    ``scale * p * (dp - sum_j dp_j p_j)`` (masked entries have ``p = 0``)."""

    def grad(dp: np.ndarray, p: np.ndarray) -> np.ndarray:
        return scale * p * (dp - (dp * p).sum(axis=-1, keepdims=True))

    return elementwise("softmax_backward", "normalization", grad, dprobs, probs)


def split_heads(x: Array, heads: int, parts: int = 1) -> list[Array]:
    """``parts`` views ``(b, heads, s, d)`` of a ``(b, s, heads * parts * d)`` activation.

    The last axis is laid out head-major, ``[head, part, d]``, as Megatron-LM
    lays out its fused QKV output: a contiguous block of columns then holds
    whole heads with their query, key and value, which is what lets tensor
    parallelism split attention by heads. A view costs nothing, so no kernel.
    """
    b, s, width = x.shape
    if width % (heads * parts):
        raise ValueError(f"width {width} does not split into {heads} heads x {parts} parts")
    grouped = x.reshape(b, s, heads, parts, width // (heads * parts))
    return [grouped[:, :, :, i, :].transpose(0, 2, 1, 3) for i in range(parts)]


def merge_heads(*parts: Array) -> Array:
    """The inverse of :func:`split_heads`: ``(b, heads, s, d)`` arrays into one
    contiguous ``(b, s, heads * len(parts) * d)`` array (a copy kernel)."""
    b, heads, s, d = parts[0].shape
    shape = (b, s, heads * len(parts) * d)
    dtype = dtype_of(parts[0])
    if is_shape_only(parts[0]):
        out: Array = ShapeArray(shape, dtype)
    else:
        out = np.stack([p.transpose(0, 2, 1, 3) for p in parts], axis=3).reshape(shape)
    emit("merge_heads", "elementwise", dtype, 0, bytes_moved(*parts, out))
    return out


# -- dropout ----------------------------------------------------------------------------------


def dropout(x: Array, mask: Array, p: float) -> Array:
    """Inverted dropout ``y = x * mask / (1 - p)``: units are dropped with probability
    ``p`` (Srivastava et al. 2014, "Dropout", sec. 2, which rescales the weights at
    test time instead; rescaling while training leaves inference untouched).

    One kernel reads ``x`` and writes both ``y`` and the one-byte ``mask``.
    """
    dtype = dtype_of(x)
    keep = 1.0 / (1.0 - p)
    out: Array = ShapeArray(x.shape, dtype) if is_shape_only(x) else x * mask * keep
    emit("dropout", "elementwise", dtype, 0, bytes_moved(x, mask, out))
    return out


def dropout_backward(dy: Array, mask: Array, p: float) -> Array:
    """``dx = dy * mask / (1 - p)``: the mask is all dropout's backward needs."""
    keep = 1.0 / (1.0 - p)
    return elementwise("dropout_backward", "elementwise", lambda g, m: g * m * keep, dy, mask)


# -- embeddings ------------------------------------------------------------------------------


def shard_rows(ids: np.ndarray, rows: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a shard holding ids ``start .. start + rows - 1``, and which ids it holds.

    Ids of other shards point at row 0; callers zero what those rows give.
    """
    local = ids - start
    inside = (local >= 0) & (local < rows)
    return np.where(inside, local, 0), inside


def embedding(ids: Array, table: Array, start: int | None = None) -> Array:
    """Rows ``table[ids]``: a gather, not a GEMM (it reads the ids and the rows it
    copies, and writes them).

    ``start`` makes ``table`` a vocabulary shard holding the rows of ids
    ``start .. start + len(table) - 1``: ids outside it give zero rows, so the
    shards' results add up to the whole lookup (Megatron-LM's
    ``VocabParallelEmbedding``, Shoeybi et al. 2019, sec. 3).
    """
    dtype = dtype_of(table)
    shape = (*ids.shape, table.shape[-1])
    if is_shape_only(table):
        out: Array = ShapeArray(shape, dtype)
    elif start is None:
        out = table[ids]
    else:
        rows, inside = shard_rows(ids, table.shape[0], start)
        out = np.where(inside[..., None], table[rows], 0.0).astype(table.dtype, copy=False)
    emit("embedding", "elementwise", dtype, 0, bytes_moved(ids) + 2 * out.nbytes)
    return out


def embedding_backward(ids: Array, dy: Array, rows: int, start: int | None = None) -> Array:
    """Gradient of :func:`embedding` w.r.t. a table of ``rows`` rows: ``dy`` scatter-added
    into the rows ``ids`` picked (a row picked twice gets both gradients).

    ``ids`` may broadcast against ``dy.shape[:-1]`` (position ids ``(1, s)``
    for a batch of ``b`` sequences). With ``start`` the table is a vocabulary
    shard, as in :func:`embedding`, and ids outside it contribute nothing.
    """
    width = dy.shape[-1]
    dtype = dtype_of(dy)
    if is_shape_only(dy):
        out: Array = ShapeArray((rows, width), dtype)
    else:
        out = np.zeros((rows, width), dtype=dy.dtype)
        flat = np.broadcast_to(ids, dy.shape[:-1]).reshape(-1)
        grads = dy.reshape(-1, width)
        if start is not None:
            flat, inside = shard_rows(flat, rows, start)
            flat, grads = flat[inside], grads[inside]
        np.add.at(out, flat, grads)
    emit("embedding_backward", "elementwise", dtype, 0, bytes_moved(ids, dy, out))
    return out


# -- loss ---------------------------------------------------------------------------------------


def cross_entropy(logits: Array, targets: Array) -> tuple[Array, Array]:
    """Mean over tokens of ``-log softmax(logits)[target]``, and the softmax.

    The softmax is returned for backward, which needs nothing else: Megatron-LM's
    cross-entropy likewise keeps it in place of the logits. 16-bit logits are
    upcast and the loss runs in FP32 passes, one kernel each, as Megatron-LM
    runs it (:mod:`simulator.ops.loss_passes`); the softmax kept is FP32.
    """
    dtype = dtype_of(logits)
    if is_shape_only(logits):
        loss: Array = ShapeArray((), dtype)
        probs: Array = ShapeArray(logits.shape, loss_dtype(logits))
    else:
        z = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=-1, keepdims=True)
        probs = e / total
        picked = np.take_along_axis(z, targets[..., None], axis=-1)
        loss = np.mean(np.log(total) - picked)
    if unfused(logits):
        emit_passes(logits, *FORWARD_PASSES)
    else:
        emit("cross_entropy", "normalization", dtype, 0, bytes_moved(logits, targets, probs))
    return loss, probs


def cross_entropy_backward(
    probs: Array, targets: Array, scale: float, start: int = 0, dtype: str | None = None
) -> Array:
    """Gradient of ``scale * cross_entropy`` w.r.t. the logits:
    ``scale * (probs - onehot(targets)) / N`` over ``N`` tokens.

    ``probs`` may hold only the vocabulary columns ``start ..`` of a shard
    (vocabulary-parallel cross-entropy); targets outside it add nothing.
    ``dtype`` is the logits' when the loss upcast them (16-bit): the gradient is
    scaled in FP32 and cast back to it (:mod:`simulator.ops.loss_passes`).
    """
    dtype = dtype or dtype_of(probs)
    factor = scale / math.prod(targets.shape)
    if is_shape_only(probs):
        out: Array = ShapeArray(probs.shape, dtype)
    else:
        out = probs * factor
        flat = out.reshape(-1, probs.shape[-1])
        rows, inside = shard_rows(targets.reshape(-1), probs.shape[-1], start)
        hit = np.flatnonzero(inside)
        flat[hit, rows[hit]] -= factor
    if unfused(dtype):
        emit_passes(out, *BACKWARD_PASSES)
    else:
        emit("cross_entropy_backward", "normalization", dtype, 0, bytes_moved(probs, targets, out))
    return out
