"""Blocks over a tensor-parallel group: every value is a list with one entry per rank.

A worker is a lockstep group of ``t`` devices (docs/design.md, key decision 3).
The code that runs on it takes and returns *lists of per-rank arrays* --
``xs[r]`` is what rank ``r`` holds -- so a reader sees the shards side by side.
The context a block returns is a list too, ``ctx[r]`` being what rank ``r``
stashes, which is how the runtime charges each device's memory.

:class:`ShardMap` is the simplest such block: rank ``r`` runs its own layer on
its own input, with no communication. It lifts any single-device layer (for
``t = 1``) and runs the replicated or elementwise parts of a tensor-parallel
model. Tensor-parallel blocks that communicate (Megatron's column- and
row-parallel layers) live in :mod:`.linear`.
"""

from __future__ import annotations

from typing import Any

from ...nn.layers import Layer
from ...nn.param import Param
from ...ops.arrays import Array
from ...ops.tape import on_rank


class ParallelBlock:
    """A block of the model as a tensor-parallel group runs it.

    Subclasses implement the per-rank-list versions of the layer protocol and
    report their parameters per rank and as full (unsharded) arrays.
    """

    name = "block"
    ranks = 1
    #: rerun under ``recompute = "full"`` (Megatron checkpoints transformer layers only)
    recomputable = True
    #: True: its output differs across ranks (a shard); False: the same on every rank;
    #: None: as its input (elementwise work on each rank's part)
    shards_output: bool | None = False

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        raise NotImplementedError

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        raise NotImplementedError

    def backward_weight(self, wctx: list[Any]) -> None:
        raise NotImplementedError

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        """B and W together, as schedules without a B/W split run them; blocks whose
        collectives can overlap their GEMMs interleave the two."""
        dxs, wctx = self.backward_input(dys, ctx)
        self.backward_weight(wctx)
        return dxs

    def params(self, rank: int) -> list[Param]:
        """The parameters rank ``rank`` holds (shards or replicas)."""
        raise NotImplementedError

    def borrowed(self, rank: int) -> list[Param]:
        """Parameters rank ``rank`` uses but another block owns (tied weights)."""
        return []

    def expert_params(self, rank: int) -> list[Param]:
        """Parameters of the experts only this expert-parallel rank holds (their
        gradients are reduced over the expert-data-parallel group,
        :mod:`simulator.parallel.expert`)."""
        return []

    def own_copy(self, rank: int, param: Param) -> Param:
        """Make rank ``rank`` hold a copy of a borrowed parameter; see ``Layer.own_copy``."""
        raise TypeError(f"{self.name} borrows no parameters")

    def configure(self, selective: bool) -> None:
        """Turn selective recomputation of the attention core on or off, where there is one."""

    def full_params(self) -> dict[str, Array]:
        """Every parameter as the single-device model would hold it."""
        raise NotImplementedError


class ShardMap(ParallelBlock):
    """Rank ``r`` applies ``layers[r]`` to ``xs[r]``; no communication.

    ``full_params`` reports rank 0's copy: ShardMap holds replicas (or, for
    ``t = 1``, the only copy).
    """

    shards_output = None

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.ranks = len(layers)
        self.name = layers[0].name
        self.recomputable = getattr(layers[0], "recomputable", True)

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        ys, ctxs = [], []
        for r, (layer, x) in enumerate(zip(self.layers, xs, strict=True)):
            with on_rank(r):
                y, c = layer.forward(x)
            ys.append(y)
            ctxs.append(c)
        return ys, ctxs

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        dxs, wctxs = [], []
        for r, (layer, dy, c) in enumerate(zip(self.layers, dys, ctx, strict=True)):
            with on_rank(r):
                dx, w = layer.backward_input(dy, c)
            dxs.append(dx)
            wctxs.append(w)
        return dxs, wctxs

    def backward_weight(self, wctx: list[Any]) -> None:
        for r, (layer, w) in enumerate(zip(self.layers, wctx, strict=True)):
            with on_rank(r):
                layer.backward_weight(w)

    def params(self, rank: int) -> list[Param]:
        return self.layers[rank].parameters()

    def borrowed(self, rank: int) -> list[Param]:
        return self.layers[rank].borrowed()

    def own_copy(self, rank: int, param: Param) -> Param:
        return self.layers[rank].own_copy(param)

    def configure(self, selective: bool) -> None:
        for layer in self.layers:
            if hasattr(layer, "selective"):
                layer.selective = selective

    def full_params(self) -> dict[str, Array]:
        return {p.name: p.value for p in self.layers[0].parameters()}


class ShardLoss:
    """A loss computed by every rank on its own copy of the output."""

    def __init__(self, losses: list[Any]) -> None:
        self.losses = losses

    def forward(self, preds: list[Array], targets: list[Array]) -> tuple[list[Array], list[Any]]:
        values, ctxs = [], []
        for r, (fn, p, t) in enumerate(zip(self.losses, preds, targets, strict=True)):
            with on_rank(r):
                v, c = fn.forward(p, t)
            values.append(v)
            ctxs.append(c)
        return values, ctxs

    def backward(self, ctx: list[Any], scale: float) -> list[Array]:
        grads = []
        for r, (fn, c) in enumerate(zip(self.losses, ctx, strict=True)):
            with on_rank(r):
                grads.append(fn.backward(c, scale))
        return grads
