"""Parameters: a value and an accumulated gradient."""

from __future__ import annotations

from ..ops.arrays import Array, is_shape_only, like


class Param:
    """A trainable array and its gradient buffer.

    Gradients accumulate (``+=``) across micro-batches, as in PyTorch; the
    optimizer step reads them and :meth:`zero_grad` clears them.
    """

    # weak references let tensor parallelism find the shards cut from a tied table
    __slots__ = ("__weakref__", "grad", "name", "value")

    def __init__(self, name: str, value: Array) -> None:
        self.name = name
        self.value = value
        self.grad = like(value)

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
