"""Attention over blocks of a split sequence: one block of queries against one of keys.

When the sequence is split over devices (context parallelism,
:mod:`simulator.parallel.context`), no device holds every key of its
queries at once: ring attention receives the keys block by block, the
all-gather variant holds them all but only needs those up to its queries.
Attention is then computed block by block, each block giving a partial
output and its softmax statistics (one log-sum-exp per query and head), and
the partial outputs merge exactly (:func:`simulator.ops.attention.merge_attention`;
Milakov and Gimelshein 2018, sec. 3; Liu et al. 2023, "Ring Attention with
Blockwise Transformers", sec. 3). The backward needs no merge: with the
whole row's output ``O`` and log-sum-exp, every block's probabilities are
``exp(S - lse)`` and its score gradient ``scale P (dP - D)`` with ``D =
rowsum(dO O)`` (Dao 2023, algorithm 2), so each block's gradients come from
that block alone.

A block's queries and keys each sit at runs of positions (``((start,
length), ...)``: a context-parallel rank holds two chunks of the sequence and
attends with both at once), which set its causal mask, its window of the
dropout mask (:meth:`~simulator.nn.dropout.Dropout.sliced`) and its FLOPs.
Both kernels of :class:`~simulator.nn.attention.AttentionCore` work on
blocks:

* **flash**: FlashAttention's forward and backward on the block, its causal
  blocks skipped (:func:`~simulator.ops.attention.flash_attention` with the
  block's positions); nothing kept but what the core keeps anyway.
* **materialised**: the block's scores (a GEMM), their softmax over the
  block's keys with its statistics
  (:func:`~simulator.ops.attention.block_softmax`), dropout and the values
  GEMM, each its own kernel; the block's probabilities (and dropout mask)
  are kept, and rescaled to the whole row's in backward. Under selective
  recomputation the block's forward runs again in backward instead.

Under a causal mask each block's kernels are credited twice their visible
pairs (:func:`~simulator.ops.attention.causal_credit`), so the blocks of one
attention count what the model's formula counts, however it is cut.
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ..ops.arrays import Array
from ..ops.attention import (
    Span,
    block_softmax,
    block_softmax_backward,
    causal_credit,
    flash_attention,
    flash_attention_backward,
    positions_of,
    rescale_rows,
    sum_groups,
)
from ..ops.tape import tagged
from .attention import AttentionCore
from .dropout import Cut, Dropout

#: Where a block's queries or keys sit: runs of positions.
Spans = tuple[Span, ...]


def _cut(spans: Spans) -> Cut:
    if len(spans) == 1:
        return slice(spans[0][0], spans[0][0] + spans[0][1])
    return positions_of(spans, 0)


def block_dropout(core: AttentionCore, q: Spans, k: Spans, seq_len: int) -> Dropout | None:
    """The window of ``core``'s probability dropout that the block of queries at ``q``
    and keys at ``k`` of a ``seq_len`` sequence applies (None without dropout)."""
    if core.dropout.p == 0.0:
        return None
    window = (slice(None), _cut(q), _cut(k))
    return core.dropout.sliced(window, (core.heads, seq_len, seq_len))


def _materialised(
    core: AttentionCore, q: Array, k: Array, v: Array, qs: Spans, ks: Spans, drop: Dropout | None
) -> tuple[Array, Array, tuple]:
    """The materialised kernels on one block: output, statistics and what backward needs."""
    b, kv, g, nq, _ = q.shape
    nk = k.shape[-2]
    credit = causal_credit(nq, nk, qs, ks)
    scores = ops.matmul(q, k.swapaxes(-1, -2), name=f"{core.name}.scores", credit=credit)
    probs, lse = block_softmax(scores, core.scale, qs, ks)
    dropped, mask = probs, None
    if drop is not None:
        dropped, mask = drop.forward(probs.reshape(b, kv * g, nq, nk))
        dropped = dropped.reshape(b, kv, g, nq, nk)
    out = ops.matmul(dropped, v, name=f"{core.name}.values", credit=credit)
    return out, lse, (probs, mask, dropped, lse)


def attend_block(
    core: AttentionCore, q: Array, k: Array, v: Array, qs: Spans, ks: Spans, seq_len: int
) -> tuple[Array, Array, Any]:
    """Attention of the queries ``q`` at ``qs`` over the keys and values ``k``, ``v`` at
    ``ks`` (grouped and rotated, ``(b, kv, g, n, d)`` and ``(b, kv, 1, n, d)``): the
    partial output, its log-sum-exp and what :func:`attend_block_backward` needs
    besides them (None for the flash kernel and under selective recomputation)."""
    drop = block_dropout(core, qs, ks, seq_len)
    if core.flash:
        keep = core._keep(q, drop, k.shape[-2]) if drop is not None else None
        p = core.dropout.p
        out, lse = flash_attention(q, k, v, core.scale, keep=keep, p=p, q_start=qs, k_start=ks)
        return out, lse, None
    out, lse, ctx = _materialised(core, q, k, v, qs, ks, drop)
    return out, lse, None if core.selective else ctx


def attend_block_backward(
    core: AttentionCore,
    dout: Array,
    q: Array,
    k: Array,
    v: Array,
    out: Array,
    lse: Array,
    rows: Array | None,
    ctx: Any,
    qs: Spans,
    ks: Spans,
    seq_len: int,
) -> tuple[Array, Array, Array]:
    """The block's share of the gradients of ``q``, ``k`` and ``v``, from the whole
    row's output gradient ``dout``, output ``out`` and log-sum-exp ``lse`` (module
    docstring); ``rows`` is ``rowsum(dO O)`` (:func:`~simulator.ops.attention.row_dot`,
    materialised kernel only) and ``ctx`` what :func:`attend_block` returned."""
    drop = block_dropout(core, qs, ks, seq_len)
    if core.flash:
        keep = core._keep(q, drop, k.shape[-2]) if drop is not None else None
        return flash_attention_backward(
            dout, q, k, v, out, lse, core.scale, keep=keep, p=core.dropout.p,
            q_start=qs, k_start=ks,
        )  # fmt: skip
    if ctx is None:  # selective recomputation: the block's forward again
        with tagged("recompute"):
            _, _, ctx = _materialised(core, q, k, v, qs, ks, drop)
    probs, mask, dropped, lse_block = ctx
    b, kv, g, nq, nk = probs.shape
    credit = causal_credit(nq, nk, qs, ks)
    name = core.name
    # one block is the whole row: its probabilities are the row's already
    scaled = dout if lse_block is lse else rescale_rows(dout, lse_block, lse, f"{name}.rescale")
    dv = ops.matmul(dropped.swapaxes(-1, -2), scaled, name=f"{name}.dv", credit=credit)
    ddropped = ops.matmul(dout, v.swapaxes(-1, -2), name=f"{name}.dprobs", credit=credit)
    dprobs = ddropped
    if drop is not None:
        dprobs, _ = drop.backward_input(ddropped.reshape(b, kv * g, nq, nk), mask)
        dprobs = dprobs.reshape(b, kv, g, nq, nk)
    assert rows is not None  # the materialised kernel's backward needs rowsum(dO O)
    dscores = block_softmax_backward(dprobs, probs, lse_block, lse, rows, core.scale)
    dq = ops.matmul(dscores, k, name=f"{name}.dq", credit=credit)
    dk = ops.matmul(dscores.swapaxes(-1, -2), q, name=f"{name}.dk", credit=credit)
    if g > 1:
        dk, dv = sum_groups(dk, f"{name}.dk.sum"), sum_groups(dv, f"{name}.dv.sum")
    return dq, dk, dv
