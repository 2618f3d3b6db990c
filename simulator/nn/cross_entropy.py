"""Softmax cross-entropy over the vocabulary, the language-modelling loss.

``loss = mean over the b*s tokens of -log softmax(logits)[next token]``: the
negative log-likelihood of the next token (Radford et al. 2018, sec. 3.1,
eq. 1), averaged as PyTorch's ``cross_entropy`` does by default. The gradient
w.r.t. the logits is ``(softmax - onehot(target)) / (b s)``.
"""

from __future__ import annotations

from typing import Any

from .. import ops_nn
from ..arrays import Array


class CrossEntropyLoss:
    """``loss, ctx = forward(logits, targets)``; ``dlogits = backward(ctx, scale)``.

    ``logits`` is ``(b, s, V)``, ``targets`` the int64 ids ``(b, s)``. The
    context is the softmax and the targets (see :func:`simulator.ops_nn.cross_entropy`).
    """

    name = "cross_entropy"

    def forward(self, logits: Array, targets: Array) -> tuple[Array, Any]:
        loss, probs = ops_nn.cross_entropy(logits, targets)
        return loss, (probs, targets)

    def backward(self, ctx: Any, scale: float) -> Array:
        probs, targets = ctx
        return ops_nn.cross_entropy_backward(probs, targets, scale)

    def shard(self, t: int, sequence_parallel: bool) -> Any:
        """This loss over logits split by vocabulary over ``t`` tensor-parallel ranks.

        See :class:`simulator.parallel.tensor_loss.VocabParallelCrossEntropy`;
        it lives with the other tensor-parallel code, which builds on this
        package, hence the import here. Under sequence parallelism the head
        has gathered the whole sequence before the logits, so the loss is the
        same either way.
        """
        from ..parallel.tensor_loss import VocabParallelCrossEntropy

        return VocabParallelCrossEntropy(t)
