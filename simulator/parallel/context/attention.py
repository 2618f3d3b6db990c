"""The attention core over a ``cp x tp`` lockstep group, and what its algorithms share.

Everything else in a layer runs on each rank's own tokens
(:mod:`.lockstep`); the core is where the context-parallel ranks meet.
:class:`ContextParallelAttention` holds one
:class:`~simulator.nn.attention.AttentionCore` per rank -- tensor-parallel
rank ``r``'s heads, at context-parallel rank ``c``'s positions, on rank ``c t
+ r`` -- and hands the ranks' fused QKV activations to the chosen algorithm
(:data:`ALGORITHMS`: :mod:`.ring`, :mod:`.allgather`, :mod:`.ulysses`).

The ranks meet through :func:`~.exchange.exchange`. The backward computes
the input gradients only: the core has no weights. Shape-only, the
tensor-parallel ranks of one context-parallel rank do the same with the same
shapes, so the algorithm runs for tensor-parallel rank 0's group alone and
stands for the others (:func:`~.lockstep.in_lockstep`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Protocol

from ...nn.attention import AttentionCore
from ...nn.param import Param
from ...ops.arrays import Array, is_shape_only
from ..tensor import ParallelBlock
from . import ALGORITHMS
from .allgather import AllGather
from .layout import TokenLayout
from .lockstep import alike, in_lockstep
from .ring import Ring
from .ulysses import Ulysses


class Algorithm(Protocol):
    """How a context-parallel group computes attention (:mod:`.ring`, :mod:`.allgather`,
    :mod:`.ulysses`): forward from the ranks' QKV activations to their outputs and
    what backward keeps, backward from the output gradients to the QKV gradients."""

    def forward(self, att: ContextParallelAttention, xs: list[Array]) -> tuple[list, list]: ...

    def backward(self, att: ContextParallelAttention, dys: list[Array], ctx: list) -> list: ...


#: What runs each of :data:`~simulator.parallel.context.ALGORITHMS`.
IMPLEMENTATIONS: dict[str, type] = {"ring": Ring, "allgather": AllGather, "ulysses": Ulysses}


class ContextParallelAttention(ParallelBlock):
    """The attention core of a ``cp x tp`` group (module docstring).

    Attributes:
        cores: per rank ``c t + r``, tensor-parallel rank ``r``'s core, its
            ``first`` set to context-parallel rank ``c``'s positions.
        t: ranks per tensor-parallel group.
        layout: which tokens every context-parallel rank holds.
        algorithm: ``ring``, ``allgather`` or ``ulysses``.
        where: the layer, for the collectives' labels.
    """

    shards_output = None

    def __init__(
        self, cores: list[AttentionCore], t: int, layout: TokenLayout, algorithm: str, where: str
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"context_parallel must be one of {ALGORITHMS}, got {algorithm!r}")
        for c in range(layout.cp):
            for core in cores[c * t : (c + 1) * t]:
                core.first = layout.positions(c)
        self.cores = cores
        self.t = t
        self.ranks = len(cores)
        self.cp = layout.cp
        self.layout = layout
        self.name = cores[0].name
        self.where = where
        self.algorithm = algorithm
        self.run: Algorithm = IMPLEMENTATIONS[algorithm]()

    @property
    def seq_len(self) -> int:
        return self.layout.seq_len

    def spans(self, rank: int) -> tuple[tuple[int, int], ...]:
        """The runs of positions worker rank ``rank`` holds."""
        return self.layout.spans(rank // self.t)

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        ys, ctx = self._for_all(xs, lambda att, xs: att.run.forward(att, xs), xs)
        if is_shape_only(xs[0]):
            return _one_output(ys, ctx, self.t)
        return ys, ctx

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        dxs = self._for_all(dys, lambda att, a: (att.run.backward(att, *a), None), (dys, ctx))
        return dxs[0], [None] * self.ranks

    def _for_all(self, probe: list[Array], fn: Callable[..., Any], args: Any) -> Any:
        """``fn(self, args)``; shape-only, ``fn`` of tensor-parallel rank 0's group, its
        results and work standing for every rank (module docstring)."""
        t = self.t
        maps = [[c * t + r for c in range(self.cp)] for r in range(t)]
        if t == 1 or not is_shape_only(probe[0]) or not alike(maps):
            return fn(self, args)
        narrow = self._narrow()
        first = (args[::t],) if isinstance(args, list) else tuple(a[::t] for a in args)
        runs = [lambda: fn(narrow, first[0] if isinstance(args, list) else first)] * t
        out = in_lockstep(runs, maps, same=True)[0]
        return tuple(None if part is None else [v for v in part for _ in range(t)] for part in out)

    def _narrow(self) -> ContextParallelAttention:
        """This core over tensor-parallel rank 0's context-parallel group alone."""
        narrow = copy.copy(self)
        narrow.t, narrow.ranks = 1, self.cp
        narrow.cores = self.cores[:: self.t]
        return narrow

    def backward_weight(self, wctx: list[Any]) -> None:
        """The core has no weights."""

    def params(self, rank: int) -> list[Param]:
        return []

    def configure(self, selective: bool) -> None:
        for core in self.cores:
            core.selective = selective

    def full_params(self) -> dict[str, Array]:
        return {}


def _one_output(ys: list[Array], ctx: list[Any], t: int) -> tuple[list[Array], list[Any]]:
    """Shape-only: every context-parallel rank's output as tensor-parallel rank ``r``'s
    of the first (they have one shape), in the outputs and in what the ranks keep.

    The blocks after attention run the first copy alone and stand for the others
    (:func:`~.lockstep.in_lockstep`), so every rank's output projection keeps the
    first's input; a rank's stash counts an array once however many of its parts
    keep it (:func:`~simulator.ops.arrays.tree_bytes`), so its attention must keep
    that same array, as it does with numbers."""
    swap = {id(y): ys[i % t] for i, y in enumerate(ys) if y.shape == ys[i % t].shape}
    return [swap.get(id(y), y) for y in ys], [_swapped(c, swap) for c in ctx]


def _swapped(tree: Any, swap: dict[int, Array]) -> Any:
    if isinstance(tree, tuple):
        return tuple(_swapped(x, swap) for x in tree)
    if isinstance(tree, list):
        return [_swapped(x, swap) for x in tree]
    return swap.get(id(tree), tree)
