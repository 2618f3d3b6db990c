"""Causal self-attention: the parameter-free core between two linear layers.

Self-attention is ``proj(core(qkv(x)))``: a linear layer produces queries,
keys and values for every head at once, the core mixes positions, and a
second linear layer projects the heads back. The two linear layers are plain
:class:`~simulator.nn.layers.Linear` layers; this module holds the core,

    softmax(Q K^T / sqrt(d) + causal mask) V      per head

(Vaswani et al. 2017, sec. 3.2.1-3.2.3), with dropout on the attention
probabilities as in GPT-2. One core serves both blocks:

* **heads**: ``heads`` query heads share ``kv_heads`` key and value heads
  (grouped-query attention, Ainslie et al. 2023; GPT's multi-head attention is
  ``kv_heads = heads``). The QKV activation is laid out group by group
  (:func:`simulator.ops.attention.split_groups`), so a tensor-parallel rank
  runs the same core on its own groups;
* **positions**: GPT learns them in its embedding; Llama rotates queries and
  keys (``rotary``, the base ``theta`` of RoPE, Su et al. 2021, sec. 3.4.2),
  which adds no stash: the rotation's backward needs only the positions;
* **kernel**: ``"materialised"`` computes the ``s x s`` scores, their softmax
  and dropout as separate kernels and keeps them for backward;
  ``"flash"`` is FlashAttention, one fused kernel each way
  (:mod:`simulator.ops.attention`).

What the core stashes for backward (16-bit bytes, ``h = heads x d``, ``k`` the
key and value heads' share ``kv_heads / heads``):

* materialised (Korthikanti et al. 2022, sec. 4.1): Q, K, V (``2sbh (1 +
  2k)``; GPT: ``6sbh``), the softmax output ``2as^2b``, its dropout mask
  ``as^2b`` and the dropped-out probabilities ``2as^2b`` -- the ``5as^2b``
  that grows with the sequence (``2as^2b`` without dropout). The
  ``1/sqrt(d)`` scale is folded into the softmax kernel, so no scaled copy of
  the scores is kept.
* flash (Dao et al. 2022, sec. 3.1): Q, K, V, the output (which the output
  projection keeps as its input anyway) and the softmax statistics, one FP32
  log-sum-exp per query row and head, ``4abs`` bytes. No ``s x s`` term: the
  dropout mask is regenerated from its seed, never stored.

Selective recomputation (Korthikanti et al. 2022, sec. 4.2) keeps only Q, K
and V and reruns the materialised core's forward inside backward: the
``5as^2b`` part is the one that grows with the sequence length while costing
few FLOPs to recompute. With the flash kernel there is nothing left to
recompute: its stash is already Q, K, V, the output and the statistics, and
its backward already recomputes the scores. Selective recomputation then
changes nothing, neither memory nor time, as Megatron-LM's documentation of
``--recompute-granularity selective`` says of flash attention.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from ..ops import functional as ops_nn
from ..ops import llama as ops_llama
from ..ops.arrays import Array, is_shape_only
from ..ops.attention import (
    flash_attention,
    flash_attention_backward,
    merge_groups,
    split_groups,
    sum_groups,
)
from ..ops.tape import tagged
from .dropout import Dropout
from .layers import Layer

#: The attention kernels a model may choose.
KERNELS = ("materialised", "flash")


class AttentionCore(Layer):
    """Scaled, causally masked attention of ``heads`` query heads of size ``head_dim``
    over ``kv_heads`` key and value heads.

    Input: the fused QKV activation ``(b, s, kv_heads (g + 2) head_dim)``,
    ``g = heads / kv_heads`` (:func:`~simulator.ops.attention.split_groups`).
    Output: the heads merged back, ``(b, s, heads * head_dim)``.

    Forward GEMMs: ``Q K^T`` and ``P V``, ``2 b s^2 heads head_dim`` FLOPs each
    (the full ``s x s`` score matrix: the causal mask saves no work in the
    count, as Korthikanti et al. 2022, appendix A count it); backward twice
    that. The flash kernel executes half of that forward and 2.5 times it
    backward (:mod:`simulator.ops.attention`), and is credited the same.

    Attributes:
        heads, head_dim, kv_heads: this core's heads (a tensor-parallel rank's share).
        dropout: dropout on the attention probabilities, per-sample mask
            ``(heads, s, s)``.
        selective: keep only Q, K, V and recompute the rest in backward
            (materialised kernel only; the module docstring).
        rotary: RoPE's base ``theta``, or None for no rotation (GPT).
        kernel: ``"materialised"`` or ``"flash"``.
        first: the position of the first query (a rank holding a later part of
            the sequence rotates from there), or the positions of every query
            (a context-parallel rank holds two chunks of the sequence).
    """

    def __init__(
        self,
        name: str,
        heads: int,
        head_dim: int,
        dropout: Dropout,
        selective: bool = False,
        kv_heads: int | None = None,
        rotary: float | None = None,
        kernel: str = "materialised",
    ) -> None:
        kv_heads = heads if kv_heads is None else kv_heads
        if heads % kv_heads:
            raise ValueError(f"{heads} query heads do not group over {kv_heads} kv heads")
        if kernel not in KERNELS:
            raise ValueError(f"attention kernel must be one of {KERNELS}, got {kernel!r}")
        self.name = name
        self.heads = heads
        self.head_dim = head_dim
        self.kv_heads = kv_heads
        self.group = heads // kv_heads
        self.scale = 1.0 / math.sqrt(head_dim)
        self.dropout = dropout
        self.selective = selective
        self.rotary = rotary
        self.kernel = kernel
        self.first: ops_llama.Positions = 0

    @property
    def flash(self) -> bool:
        return self.kernel == "flash"

    # -- the parts ------------------------------------------------------------------------
    def split(self, x: Array) -> tuple[Array, Array, Array]:
        """Queries ``(b, kv, g, s, d)``, keys and values ``(b, kv, 1, s, d)``, rotated."""
        q, k, v = split_groups(x, self.kv_heads, self.group)
        if self.rotary is not None:
            q = ops_llama.rope(q, self.rotary, self.first)
            k = ops_llama.rope(k, self.rotary, self.first)
        return q, k, v

    def merge(self, out: Array) -> Array:
        """``(b, kv, g, s, d)`` heads -> ``(b, s, heads d)`` (head ``i g + j`` is query
        ``j`` of group ``i``, the order of the QKV layout)."""
        b, _, _, s, d = out.shape
        return ops_nn.merge_heads(out.reshape(b, self.heads, s, d))

    def heads_of(self, y: Array) -> Array:
        """The inverse view of :meth:`_merge`, free."""
        b, s, _ = y.shape
        (heads,) = ops_nn.split_heads(y, self.heads)
        return heads.reshape(b, self.kv_heads, self.group, s, self.head_dim)

    def unrotate(self, dq: Array, dk: Array, dv: Array) -> Array:
        if self.rotary is not None:
            dq = ops_llama.rope_backward(dq, self.rotary, self.first)
            dk = ops_llama.rope_backward(dk, self.rotary, self.first)
        return merge_groups(dq, dk, dv)

    def _keep(
        self, q: Array, dropout: Dropout | None = None, sk: int | None = None
    ) -> Array | None:
        """Flash: the dropout mask of the probabilities, regenerated (never stored), of
        ``q``'s rows and ``sk`` keys (default: square) under ``dropout`` (default: the
        core's own)."""
        dropout = self.dropout if dropout is None else dropout
        if dropout.p == 0.0 or is_shape_only(q):
            return None
        b, kv, g, s, _ = q.shape
        sk = s if sk is None else sk
        probe = np.broadcast_to(np.zeros((), q.dtype), (b, kv * g, s, sk))
        return dropout.mask(probe).reshape(b, kv, g, s, sk)

    # -- materialised ---------------------------------------------------------------------
    def _attend(self, q: Array, k: Array, v: Array) -> tuple[Array, tuple]:
        """Attention of grouped queries, keys and values; the full context."""
        b, kv, g, s, _ = q.shape
        scores = ops.matmul(q, k.swapaxes(-1, -2), name=f"{self.name}.scores")
        probs = ops_nn.causal_softmax(scores.reshape(b, kv * g, s, s), self.scale)
        dropped, mask = self.dropout.forward(probs)
        out = ops.matmul(dropped.reshape(b, kv, g, s, s), v, name=f"{self.name}.values")
        return out, (q, k, v, probs, mask, dropped)

    def _attend_backward(self, dout: Array, ctx: tuple) -> tuple[Array, Array, Array]:
        q, k, v, probs, mask, dropped = ctx
        b, kv, g, s, _ = q.shape
        ddropped = ops.matmul(dout, v.swapaxes(-1, -2), name=f"{self.name}.dprobs")
        grouped = dropped.reshape(b, kv, g, s, s)
        dv = ops.matmul(grouped.swapaxes(-1, -2), dout, name=f"{self.name}.dv")
        dprobs, _ = self.dropout.backward_input(ddropped.reshape(b, kv * g, s, s), mask)
        dscores = ops_nn.softmax_backward(dprobs, probs, self.scale).reshape(b, kv, g, s, s)
        dq = ops.matmul(dscores, k, name=f"{self.name}.dq")
        dk = ops.matmul(dscores.swapaxes(-1, -2), q, name=f"{self.name}.dk")
        if g > 1:
            dk, dv = sum_groups(dk, f"{self.name}.dk.sum"), sum_groups(dv, f"{self.name}.dv.sum")
        return dq, dk, dv

    # -- grouped, rotated inputs ------------------------------------------------------------
    def attend(self, q: Array, k: Array, v: Array) -> tuple[Array, Any]:
        """Attention of queries, keys and values already grouped and rotated (:meth:`split`)
        over the whole sequence, ``(b, kv, g, s, d)``, and what :meth:`attend_backward`
        needs: the forward of :meth:`forward` without the split and the merge (a rank
        that received its heads of the whole sequence from others, DeepSpeed-Ulysses,
        :mod:`simulator.parallel.context`)."""
        if self.flash:
            out, lse = flash_attention(q, k, v, self.scale, keep=self._keep(q), p=self.dropout.p)
            return out, (q, k, v, out, lse)
        out, ctx = self._attend(q, k, v)
        return out, ((q, k, v) if self.selective else ctx)

    def attend_backward(self, dout: Array, ctx: Any) -> tuple[Array, Array, Array]:
        """Gradients of :meth:`attend`'s queries, keys and values."""
        if self.flash:
            q, k, v, out, lse = ctx
            keep = self._keep(q)
            return flash_attention_backward(
                dout, q, k, v, out, lse, self.scale, keep=keep, p=self.dropout.p
            )
        if self.selective:
            with tagged("recompute"):
                _, ctx = self._attend(*ctx)
        return self._attend_backward(dout, ctx)

    # -- the layer --------------------------------------------------------------------------
    def forward(self, x: Array) -> tuple[Array, Any]:
        q, k, v = self.split(x)
        if self.flash:
            out, lse = flash_attention(q, k, v, self.scale, keep=self._keep(q), p=self.dropout.p)
            y = self.merge(out)
            # the merged output is what the output projection keeps too: one array
            return y, (q, k, v, y, lse)
        out, ctx = self._attend(q, k, v)
        return self.merge(out), ((q, k, v) if self.selective else ctx)

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        dout = self.heads_of(dy)
        if self.flash:
            q, k, v, y, lse = ctx
            keep = self._keep(q)
            grads = flash_attention_backward(
                dout, q, k, v, self.heads_of(y), lse, self.scale, keep=keep, p=self.dropout.p
            )
            return self.unrotate(*grads), None
        if self.selective:
            # the whole forward of the core runs again, as Megatron-LM's checkpointed
            # core attention does; its FLOPs are hardware FLOPs, not model FLOPs
            with tagged("recompute"):
                _, ctx = self._attend(*ctx)
        return self.unrotate(*self._attend_backward(dout, ctx)), None
