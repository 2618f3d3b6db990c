"""Layers made of layers: in sequence, or around a residual connection.

One implementation serves two kinds of value: a device's arrays
(:class:`Sequential` and :class:`Residual` here) and a tensor-parallel group's
per-rank lists (:class:`simulator.parallel.tensor.Chain` and ``Residual``,
built on the same two mixins). Only two things differ between them, and they
are the mixins' hooks: how the parts' contexts make the whole's
(:meth:`Composite.join`, :meth:`Composite.part`), and how two values add
(:meth:`WithResidual.add`).

Backward runs the input gradients (B) from the last part to the first, as
autograd does; the weight gradients (W) depend on nothing but their own
part's context, and run part by part in forward order.
"""

from __future__ import annotations

from typing import Any

from .. import ops
from ..ops.arrays import Array
from .layers import Layer
from .param import Param


class Composite:
    """Parts applied in order; the context is the list of theirs (:meth:`join`)."""

    parts: list[Any]

    def join(self, ctxs: list[Any]) -> Any:
        """The whole's context from its parts' (here: the list of them)."""
        return ctxs

    def part(self, ctx: Any, i: int) -> Any:
        """Part ``i``'s share of the whole's context."""
        return ctx[i]

    def forward(self, x: Any) -> tuple[Any, Any]:
        ctxs = []
        for part in self.parts:
            x, ctx = part.forward(x)
            ctxs.append(ctx)
        return x, self.join(ctxs)

    def backward_input(self, dy: Any, ctx: Any) -> tuple[Any, Any]:
        parts = self.parts
        wctxs: list[Any] = [None] * len(parts)
        for i in reversed(range(len(parts))):
            dy, wctxs[i] = parts[i].backward_input(dy, self.part(ctx, i))
        return dy, self.join(wctxs)

    def backward_weight(self, wctx: Any) -> None:
        for i, part in enumerate(self.parts):
            part.backward_weight(self.part(wctx, i))


class WithResidual:
    """``x + parts(x)``: the output gradient reaches ``x`` along both paths.

    Mixed in before a :class:`Composite`; :meth:`add` adds two values.
    """

    name: str

    def add(self, a: Any, b: Any, name: str) -> Any:
        raise NotImplementedError

    def forward(self, x: Any) -> tuple[Any, Any]:
        y, ctx = super().forward(x)  # type: ignore[misc]
        return self.add(x, y, f"{self.name}.residual"), ctx

    def backward_input(self, dy: Any, ctx: Any) -> tuple[Any, Any]:
        dx, wctx = super().backward_input(dy, ctx)  # type: ignore[misc]
        return self.add(dy, dx, f"{self.name}.residual.dx"), wctx


class Sequential(Composite, Layer):
    """Layers applied in order; the context is the list of their contexts."""

    def __init__(self, name: str, layers: list[Layer]) -> None:
        self.name = name
        self.layers = layers

    @property
    def parts(self) -> list[Layer]:  # type: ignore[override]
        return self.layers

    def parameters(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.parameters()]

    def borrowed(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.borrowed()]

    def own_copy(self, param: Param) -> Param:
        (layer,) = [layer for layer in self.layers if any(p is param for p in layer.borrowed())]
        return layer.own_copy(param)


class Residual(WithResidual, Composite, Layer):
    """``y = x + branch(x)``; the context is the branch's."""

    def __init__(self, name: str, branch: Layer) -> None:
        self.name = name
        self.branch = branch

    @property
    def parts(self) -> list[Layer]:  # type: ignore[override]
        return [self.branch]

    def join(self, ctxs: list[Any]) -> Any:
        return ctxs[0]

    def part(self, ctx: Any, i: int) -> Any:
        return ctx

    def add(self, a: Array, b: Array, name: str) -> Array:
        return ops.add(a, b, name=name)

    def parameters(self) -> list[Param]:
        return self.branch.parameters()
