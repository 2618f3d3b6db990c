"""The op vocabulary: numpy math that reports its cost, shape-only arrays and the tape.

* :mod:`.basic` -- GEMMs, elementwise ops, activations and the MSE loss, each
  recording a kernel with its FLOPs and bytes (re-exported here: ``ops.matmul``);
* :mod:`.functional` -- the transformer's ops: layer norm, causal softmax,
  heads, dropout, embedding, cross entropy;
* :mod:`.llama` -- RMSNorm, the SwiGLU gate, rotary position embeddings;
* :mod:`.attention` -- grouped query heads and FlashAttention as one fused
  kernel, with the log-sum-exp merge of partial attentions;
* :mod:`.precision` -- BF16 or FP8 for the linear layers' GEMMs;
* :mod:`.arrays` -- :class:`~.arrays.ShapeArray`, an array with a shape and
  no data, so the same layer code runs at any size;
* :mod:`.tape` -- the record of what code did (kernels, collectives, waits,
  marks), which the runtime prices and replays.
"""

from .basic import (
    add,
    bytes_moved,
    cast,
    elementwise,
    emit,
    fixed,
    gelu,
    gelu_backward,
    matmul,
    mse,
    mse_backward,
    mul,
    relu,
    relu_backward,
    scale,
    sub,
    sum_to_last,
)

__all__ = [
    "add",
    "bytes_moved",
    "cast",
    "elementwise",
    "emit",
    "fixed",
    "gelu",
    "gelu_backward",
    "matmul",
    "mse",
    "mse_backward",
    "mul",
    "relu",
    "relu_backward",
    "scale",
    "sub",
    "sum_to_last",
]
