"""Softmax cross-entropy over the vocabulary, the language-modelling loss.

``loss = mean over the b*s tokens of -log softmax(logits)[next token]``: the
negative log-likelihood of the next token (Radford et al. 2018, sec. 3.1,
eq. 1), averaged as PyTorch's ``cross_entropy`` does by default. The gradient
w.r.t. the logits is ``(softmax - onehot(target)) / (b s)``.
"""

from __future__ import annotations

from typing import Any

from ..ops import functional as ops_nn
from ..ops.arrays import Array, dtype_of


class CrossEntropyLoss:
    """``loss, ctx = forward(logits, targets)``; ``dlogits = backward(ctx, scale)``.

    ``logits`` is ``(b, s, V)``, ``targets`` the int64 ids ``(b, s)``. The
    context is the softmax, the targets and the logits' dtype (see
    :func:`simulator.ops.functional.cross_entropy`).
    """

    name = "cross_entropy"

    def forward(self, logits: Array, targets: Array) -> tuple[Array, Any]:
        loss, probs = ops_nn.cross_entropy(logits, targets)
        return loss, (probs, targets, dtype_of(logits))

    def backward(self, ctx: Any, scale: float) -> Array:
        probs, targets, dtype = ctx
        return ops_nn.cross_entropy_backward(probs, targets, scale, dtype=dtype)
