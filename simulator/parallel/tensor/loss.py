"""The GPT's loss over vocabulary-parallel logits, which are never gathered.

The head of a tensor-parallel GPT (:mod:`.gpt`) ends
with a column-parallel GEMM over the vocabulary: rank ``r`` holds the logits
of its ``V/t`` words only. Gathering the ``b s V`` logits would be the largest
message of the step; Shoeybi et al. (2019, sec. 3) instead fuse the output
GEMM with the cross-entropy, so that only ``b s`` numbers per step of the
softmax cross the group.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import ops
from ...ops import functional as ops_nn
from ...ops.arrays import Array, ShapeArray, dtype_of, is_shape_only
from ...ops.loss_passes import emit_passes, loss_dtype, unfused
from .collectives import collective, per_rank


def _row_max(z: Array) -> Array:
    """The largest logit of every token within this rank's words (16-bit logits:
    upcast to FP32 first, :mod:`simulator.ops.loss_passes`)."""
    dtype = loss_dtype(z)
    out = ShapeArray(z.shape[:-1], dtype) if is_shape_only(z) else z.max(axis=-1)
    if unfused(z):
        emit_passes(z, "loss_upcast", "loss_max")
    else:
        ops.emit("vocab_parallel_max", "normalization", dtype, 0, ops.bytes_moved(z, out))
    return out


def _exp_and_target(z: Array, maxima: Array, targets: Array, start: int) -> tuple[Array, ...]:
    """``e = exp(z - max)`` over this rank's words, its row sums, and ``z - max`` at the
    target where this rank holds the target's word (zero elsewhere): three FP32
    passes for 16-bit logits (shift, exp, sum)."""
    dtype = loss_dtype(z)
    if is_shape_only(z):
        e: Array = ShapeArray(z.shape, dtype)
        total: Array = ShapeArray(z.shape[:-1], dtype)
        picked: Array = ShapeArray(z.shape[:-1], dtype)
    else:
        shifted = z - maxima.max(axis=0)[..., None]
        e = np.exp(shifted)
        total = e.sum(axis=-1)
        rows, inside = ops_nn.shard_rows(targets, z.shape[-1], start)
        picked = np.where(inside, np.take_along_axis(shifted, rows[..., None], -1)[..., 0], 0.0)
    if unfused(z):
        emit_passes(z, "loss_shift", "loss_exp", "loss_sum")
    else:
        traffic = ops.bytes_moved(z, maxima, targets, e, total, picked)
        ops.emit("vocab_parallel_exp", "normalization", dtype, 0, traffic)
    return e, total, picked


def _loss_and_softmax(e: Array, total: Array, picked: Array, upcast: bool) -> tuple[Array, Array]:
    """``mean(log sum exp - target logit)`` and this rank's columns of the softmax."""
    dtype = dtype_of(e)
    if is_shape_only(e):
        loss: Array = ShapeArray((), dtype)
        probs: Array = ShapeArray(e.shape, dtype)
    else:
        loss = np.mean(np.log(total) - picked)
        probs = e / total[..., None]
    if upcast:
        emit_passes(e, "loss_normalise")
    else:
        traffic = ops.bytes_moved(e, total, picked, probs)
        ops.emit("vocab_parallel_loss", "normalization", dtype, 0, traffic)
    return loss, probs


class VocabParallelCrossEntropy:
    """Cross-entropy over vocabulary-parallel logits, without gathering them.

    Shoeybi et al. 2019, sec. 3: instead of all-gathering the ``b s V``
    logits, fuse the output GEMM with the loss so that only ``b s`` numbers
    travel (Megatron-LM's ``_VocabParallelCrossEntropy``). With rank ``r``
    holding the logits ``z_r`` of its ``V/t`` words::

        m     = max over ranks of max(z_r)          # for a stable exp
        sum   = sum over ranks of sum(exp(z_r - m))   all-reduce
        z_t   = sum over ranks of (z_r - m)[target]   all-reduce (one rank holds it)
        loss  = mean(log(sum) - z_t)

    Megatron-LM all-reduces the maxima with MAX; our collectives add, so the
    ``t`` maxima are all-gathered (``b s`` numbers each) and every rank takes
    the largest. Backward needs no communication: rank ``r``'s gradient is
    ``softmax_r - onehot_r(target)`` on its columns, from the softmax shard
    kept in place of the logits, as the single-device loss keeps its softmax.
    """

    name = "cross_entropy"

    def __init__(self, t: int) -> None:
        self.ranks = t

    def forward(self, logits: list[Array], targets: list[Array]) -> tuple[list[Array], list[Any]]:
        t, words = self.ranks, logits[0].shape[-1]
        local = per_rank(t, lambda r: _row_max(logits[r]))
        maxima = collective(
            "all_gather", [m.reshape(1, *m.shape) for m in local], "loss: all-gather max logit"
        )
        parts = per_rank(t, lambda r: _exp_and_target(logits[r], maxima[r], targets[r], r * words))
        totals = collective("all_reduce", [p[1] for p in parts], "loss: all-reduce sum exp")
        picked = collective("all_reduce", [p[2] for p in parts], "loss: all-reduce target logit")
        upcast, dtype = unfused(logits[0]), dtype_of(logits[0])
        outs = per_rank(t, lambda r: _loss_and_softmax(parts[r][0], totals[r], picked[r], upcast))
        return [loss for loss, _ in outs], [
            (probs, y, dtype) for (_, probs), y in zip(outs, targets, strict=True)
        ]

    def backward(self, ctx: list[Any], scale: float) -> list[Array]:
        words = ctx[0][0].shape[-1]
        return per_rank(
            self.ranks,
            lambda r: ops_nn.cross_entropy_backward(
                ctx[r][0], ctx[r][1], scale, r * words, dtype=ctx[r][2]
            ),
        )
