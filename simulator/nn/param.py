"""Parameters: a value and an accumulated gradient.

The gradient of a BF16 parameter is FP32: Megatron-LM accumulates and
reduces BF16 models' gradients in FP32 ("bfloat16 requires gradient
accumulation and all-reduce to be done in fp32": ``--bf16`` turns on
``accumulate_allreduce_grads_in_fp32``, ``megatron/arguments.py`` at tag v2.5,
``megatron/training/arguments.py`` at core_v0.8.0), into a ``main_grad``
buffer of FP32, so the data-parallel all-reduce or reduce-scatter moves 4
bytes per parameter, not 2. FP16 parameters keep FP16 gradients (the flag
is off by default for them), and numerics mode's float32 and float64 their own.
"""

from __future__ import annotations

from ..ops.arrays import Array, dtype_of, is_shape_only, like

#: the dtype a parameter's gradient is accumulated and reduced in, where not its own
GRAD_DTYPE = {"bf16": "float32"}


class Param:
    """A trainable array and its gradient buffer (FP32 for BF16 values, module docstring).

    Gradients accumulate (``+=``) across micro-batches, as in PyTorch; the
    optimizer step reads them and :meth:`zero_grad` clears them.
    """

    # weak references let tensor parallelism find the shards cut from a tied table
    __slots__ = ("__weakref__", "grad", "name", "value")

    def __init__(self, name: str, value: Array) -> None:
        self.name = name
        self.value = value
        self.grad = like(value, dtype=GRAD_DTYPE.get(dtype_of(value)))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def nbytes(self) -> int:
        return int(self.value.nbytes)

    @property
    def size(self) -> int:
        return int(self.value.size)

    def accumulate(self, g: Array) -> None:
        """Add ``g`` to the gradient (part of the backward kernel that produced it)."""
        if not is_shape_only(self.grad):
            self.grad += g

    def zero_grad(self) -> None:
        if not is_shape_only(self.grad):
            self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Param({self.name}, {self.shape})"
