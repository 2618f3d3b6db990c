"""Causal multi-head self-attention: the parameter-free core between two linear layers.

Self-attention in a GPT is ``proj(core(qkv(x)))``: a linear layer produces
queries, keys and values for every head at once, the core mixes positions,
and a second linear layer projects the heads back. The two linear layers are
plain :class:`~simulator.nn.layers.Linear` layers; this module holds the core,

    softmax(Q K^T / sqrt(d) + causal mask) V      per head

(Vaswani et al. 2017, sec. 3.2.1-3.2.3), with dropout on the attention
probabilities as in GPT-2. Heads stay an explicit axis, ``(b, heads, s, d)``,
so a tensor-parallel rank runs the same core on its own heads.

What the core stashes for backward (Korthikanti et al. 2022, sec. 4.1):
Q and K for the gradient of ``Q K^T``, the softmax output for the softmax
gradient, the dropout mask, the dropped-out probabilities and V for the
gradient of the product with V -- ``6sbh + 5as^2b`` bytes in 16-bit. The
``1/sqrt(d)`` scale is folded into the softmax kernel, so no scaled copy of the
scores is kept.

Selective recomputation (Korthikanti et al. 2022, sec. 4.2) keeps only Q, K
and V and reruns the core's forward inside backward: the ``5as^2b`` part is
the one that grows with the sequence length while costing few FLOPs to
recompute.
"""

from __future__ import annotations

import math
from typing import Any

from .. import ops
from ..ops import functional as ops_nn
from ..ops.arrays import Array
from ..ops.tape import tagged
from .dropout import Dropout
from .layers import Layer


class AttentionCore(Layer):
    """Scaled, causally masked attention over ``heads`` heads of size ``head_dim``.

    Input: the fused QKV activation ``(b, s, heads * 3 * head_dim)``, laid out
    head-major (see :func:`simulator.ops.functional.split_heads`). Output: the heads
    merged back, ``(b, s, heads * head_dim)``.

    Forward GEMMs: ``Q K^T`` and ``P V``, ``2 b s^2 heads head_dim`` FLOPs each
    (the full ``s x s`` score matrix: the causal mask saves no work in the
    count, as Korthikanti et al. 2022, appendix A count it). Backward runs four
    GEMMs of the same size, twice the forward.

    Attributes:
        heads, head_dim: this core's heads (a tensor-parallel rank's share).
        dropout: dropout on the attention probabilities, per-sample mask
            ``(heads, s, s)``.
        selective: keep only Q, K, V and recompute the rest in backward.
    """

    def __init__(
        self, name: str, heads: int, head_dim: int, dropout: Dropout, selective: bool = False
    ) -> None:
        self.name = name
        self.heads = heads
        self.head_dim = head_dim
        self.scale = 1.0 / math.sqrt(head_dim)
        self.dropout = dropout
        self.selective = selective

    def _attend(self, q: Array, k: Array, v: Array) -> tuple[Array, tuple]:
        """Attention of ``(b, heads, s, d)`` queries, keys and values; the full context."""
        scores = ops.matmul(q, k.swapaxes(-1, -2), name=f"{self.name}.scores")
        probs = ops_nn.causal_softmax(scores, self.scale)
        dropped, mask = self.dropout.forward(probs)
        out = ops.matmul(dropped, v, name=f"{self.name}.values")
        return out, (q, k, v, probs, mask, dropped)

    def forward(self, x: Array) -> tuple[Array, Any]:
        q, k, v = ops_nn.split_heads(x, self.heads, 3)
        out, ctx = self._attend(q, k, v)
        return ops_nn.merge_heads(out), ((q, k, v) if self.selective else ctx)

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        if self.selective:
            # the whole forward of the core runs again, as Megatron-LM's checkpointed
            # core attention does; its FLOPs are hardware FLOPs, not model FLOPs
            with tagged("recompute"):
                _, ctx = self._attend(*ctx)
        q, k, v, probs, mask, dropped = ctx
        (dout,) = ops_nn.split_heads(dy, self.heads)
        ddropped = ops.matmul(dout, v.swapaxes(-1, -2), name=f"{self.name}.dprobs")
        dv = ops.matmul(dropped.swapaxes(-1, -2), dout, name=f"{self.name}.dv")
        dprobs, _ = self.dropout.backward_input(ddropped, mask)
        dscores = ops_nn.softmax_backward(dprobs, probs, self.scale)
        dq = ops.matmul(dscores, k, name=f"{self.name}.dq")
        dk = ops.matmul(dscores.swapaxes(-1, -2), q, name=f"{self.name}.dk")
        return ops_nn.merge_heads(dq, dk, dv), None
