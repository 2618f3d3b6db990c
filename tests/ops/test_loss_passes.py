"""The loss of a 16-bit model as Megatron-LM runs it: FP32 passes, one kernel each."""

import numpy as np
import pytest

from simulator.nn.cross_entropy import CrossEntropyLoss
from simulator.ops.arrays import ShapeArray
from simulator.ops.loss_passes import BACKWARD_PASSES, FORWARD_PASSES
from simulator.ops.tape import recording
from simulator.parallel.tensor.loss import VocabParallelCrossEntropy

B, S, V = 2, 3, 16
TOKENS, LOGITS = B * S, B * S * V


def run(loss, logits, targets):
    with recording() as tape:
        _, ctx = loss.forward(logits, targets)
        grad = loss.backward(ctx, 1.0)
    return tape.kernels(), ctx, grad


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_a_16_bit_loss_moves_52_bytes_per_logit_in_eight_passes(dtype):
    kernels, ctx, grad = run(
        CrossEntropyLoss(), ShapeArray((B, S, V), dtype), ShapeArray((B, S), "int64")
    )
    assert tuple(k.name for k in kernels) == FORWARD_PASSES + BACKWARD_PASSES
    assert all(k.dtype == "float32" and k.flops == 0 for k in kernels)
    # 38 bytes a logit forward, 14 backward; five passes also move a 4-byte value per token
    assert sum(k.bytes for k in kernels) == 52 * LOGITS + 5 * 4 * TOKENS
    assert ctx[0].dtype == "float32"  # the softmax kept for backward
    assert (grad.dtype, grad.shape) == (dtype, (B, S, V))


@pytest.mark.parametrize("t", [2, 4])
def test_the_vocabulary_parallel_loss_runs_the_same_passes_on_its_shard(t):
    logits = [ShapeArray((B, S, V // t), "bf16") for _ in range(t)]
    targets = [ShapeArray((B, S), "int64") for _ in range(t)]
    loss = VocabParallelCrossEntropy(t)
    with recording() as tape:
        _, ctx = loss.forward(logits, targets)
        grads = loss.backward(ctx, 1.0)
    for r in range(t):
        kernels = tape.kernels(r)
        assert tuple(k.name for k in kernels) == FORWARD_PASSES + BACKWARD_PASSES
        assert sum(k.bytes for k in kernels) == 52 * LOGITS // t + 5 * 4 * TOKENS
        assert grads[r].dtype == "bf16"


def test_full_precision_logits_keep_the_one_fused_pass_each_way():
    logits = np.zeros((B, S, V))
    kernels, ctx, grad = run(CrossEntropyLoss(), logits, np.zeros((B, S), dtype=np.int64))
    assert [k.name for k in kernels] == ["cross_entropy", "cross_entropy_backward"]
    assert ctx[0].dtype == np.float64 and grad.dtype == np.float64
