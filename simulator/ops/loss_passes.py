"""The kernels of the language-model loss, as Megatron-LM runs it in mixed precision.

With 16-bit logits, Megatron-LM does not fuse the cross-entropy. It upcasts
the ``b s V/t`` logits to FP32 (``output.float()`` before the loss,
``megatron/model/gpt_model.py`` at tag v2.5; inside
``VocabParallelCrossEntropy.calculate_logits_max`` at core_v0.8.0) and then
runs one PyTorch kernel per step of ``_VocabParallelCrossEntropy``
(``megatron/mpu/cross_entropy.py`` at v2.5,
``megatron/core/tensor_parallel/cross_entropy.py`` at core_v0.8.0; the fused
kernel, ``--cross-entropy-loss-fusion``, is off by default), each a full pass
over the FP32 logits:

==========  ===========================================  =================
pass        code                                         bytes per logit
==========  ===========================================  =================
upcast      ``logits.float()``                           2 read + 4 write
max         ``torch.max(logits, dim=-1)``                4 read
shift       ``logits -= logits_max``                     4 read + 4 write
exp         ``torch.exp(logits, out=logits)``            4 read + 4 write
sum         ``exp_logits.sum(dim=-1)``                   4 read
normalise   ``exp_logits.div_(sum_exp_logits)``          4 read + 4 write
scale       ``grad_input.mul_(grad_output)`` (backward)  4 read + 4 write
downcast    the upcast's backward, FP32 to 16-bit        4 read + 2 write
==========  ===========================================  =================

52 bytes per logit for a 16-bit model, where one fused pass forward and one
backward move 8; and the softmax that backward keeps is FP32. The per-token
vectors (maxima, sums, target logits) are ``1/V`` of that and are counted
too. With V = 131,072 and a sequence of 4096 that is 28 GB per sequence.

Full-precision logits (numerics mode, float32 or float64) take one fused pass
each way, as a fused cross-entropy kernel does, and the softmax kept is in
the logits' dtype: the ideal devices' numbers do not move.
"""

from __future__ import annotations

import math

from .arrays import ITEMSIZE, Array, dtype_of
from .basic import emit

#: The logits' dtypes Megatron-LM upcasts for the loss (16-bit floats); a set, so
#: that a benchmark can empty it to measure what the passes cost.
UNFUSED_DTYPES = {"bf16", "fp16"}

#: The passes of forward and of backward, in order.
FORWARD_PASSES = ("loss_upcast", "loss_max", "loss_shift", "loss_exp", "loss_sum", "loss_normalise")
BACKWARD_PASSES = ("loss_scale", "loss_downcast")

#: pass -> its op class (the reductions along a row are ``normalization``).
CLASSES = {
    "loss_upcast": "elementwise",
    "loss_max": "normalization",
    "loss_shift": "elementwise",
    "loss_exp": "elementwise",
    "loss_sum": "normalization",
    "loss_normalise": "elementwise",
    "loss_scale": "elementwise",
    "loss_downcast": "elementwise",
}


def unfused(logits: Array | str) -> bool:
    """Whether the loss over ``logits`` (or logits of that dtype) runs as Megatron-LM's
    unfused FP32 passes: 16-bit logits."""
    return (logits if isinstance(logits, str) else dtype_of(logits)) in UNFUSED_DTYPES


def loss_dtype(logits: Array) -> str:
    """The dtype the loss computes in and keeps its softmax in: FP32 for 16-bit
    logits, else the logits' own."""
    return "float32" if unfused(logits) else dtype_of(logits)


def pass_bytes(name: str, n: int, rows: int, half: int) -> int:
    """Bytes one pass moves over ``n`` logits of ``rows`` tokens, the 16-bit side of the
    casts ``half`` bytes each (the table of the module docstring)."""
    f = ITEMSIZE["float32"]
    vector = rows * f
    return {
        "loss_upcast": n * (half + f),
        "loss_max": n * f + vector,
        "loss_shift": 2 * n * f + vector,
        "loss_exp": 2 * n * f,
        "loss_sum": n * f + vector,
        "loss_normalise": 2 * n * f + vector,
        "loss_scale": 2 * n * f + vector,
        "loss_downcast": n * (f + half),
    }[name]


def emit_passes(logits: Array, *names: str) -> None:
    """Record the named passes over ``logits`` (the 16-bit logits, or the FP32 softmax
    of the same shape: only the shape and the model's 16-bit width count)."""
    n = math.prod(logits.shape)
    rows = n // logits.shape[-1]
    half = ITEMSIZE["bf16"]  # fp16 alike
    for name in names:
        emit(name, CLASSES[name], "float32", 0, pass_bytes(name, n, rows, half))
