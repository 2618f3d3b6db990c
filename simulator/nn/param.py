"""Parameters: a value and an accumulated gradient.

A parameter's gradient has the parameter's dtype, unless the training asks
for wider gradients (``training.grad_precision = "fp32"``, :func:`gradients_in`):
then a 16-bit parameter's gradient is accumulated in FP32, and the data-parallel
all-reduce or reduce-scatter moves 4 bytes per parameter instead of 2. That is
what Megatron-LM does for BF16 models ("bfloat16 requires gradient
accumulation and all-reduce to be done in fp32": ``--bf16`` turns on
``accumulate_allreduce_grads_in_fp32`` into an FP32 ``main_grad`` buffer,
``megatron/arguments.py`` at tag v2.5, ``megatron/training/arguments.py`` at
core_v0.8.0), and DeepSpeed's pipeline engine for BF16 since
microsoft/DeepSpeed#1801 (2022, "fp32 reduction", written for BLOOM). It is
off by default, so that the model's own dtype is what every closed form of
the data-parallel traffic counts; numerics mode's float32 and float64
parameters are never widened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

from ..ops.arrays import Array, dtype_of, is_shape_only, like

#: ``training.grad_precision`` -> the dtype each parameter dtype's gradient takes
#: where it is not the parameter's own
GRAD_PRECISIONS: dict[str, Mapping[str, str]] = {
    "model": MappingProxyType({}),
    "fp32": MappingProxyType({"bf16": "float32", "fp16": "float32"}),
}

_wider: ContextVar[Mapping[str, str]] = ContextVar(
    "wider_gradients", default=GRAD_PRECISIONS["model"]
)


@contextlib.contextmanager
def gradients_in(precision: str) -> Iterator[None]:
    """Parameters made inside take the gradients of ``precision`` (a key of
    :data:`GRAD_PRECISIONS`): the runtime sets it around building a plan and
    running it, so that every copy and shard of a parameter agrees."""
    token = _wider.set(GRAD_PRECISIONS[precision])
    try:
        yield
    finally:
        _wider.reset(token)


class Param:
    """A trainable array and its gradient buffer (module docstring for its dtype).

    Gradients accumulate (``+=``) across micro-batches, as in PyTorch; the
    optimizer step reads them and :meth:`zero_grad` clears them.
    """

    # weak references let tensor parallelism find the shards cut from a tied table
    __slots__ = ("__weakref__", "grad", "name", "value")

    def __init__(self, name: str, value: Array) -> None:
        self.name = name
        self.value = value
        self.grad = like(value, dtype=_wider.get().get(dtype_of(value)))

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
