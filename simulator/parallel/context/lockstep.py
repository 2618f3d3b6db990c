"""A worker of ``cp x tp`` devices: every context-parallel rank's tensor-parallel code side by side.

A worker is a lockstep group (docs/design.md, key decision 3). With context
parallelism it holds ``cp`` tensor-parallel groups of ``t`` ranks -- rank
``c t + r`` is tensor-parallel rank ``r`` of context-parallel rank ``c`` --
which run the same layers on the same shapes, each on its own tokens, in
lockstep. Outside attention they do not talk to each other, so each runs
the tensor-parallel code of :mod:`simulator.parallel.tensor` unchanged, on
its own copy of the weights (the weights are replicated over the group,
their gradients reduced over ``dp x cp``).

:func:`side_by_side` runs the copies one after the other, each recording on
a tape of its own (its collectives placed on its own ranks' devices), and
joins the tapes position by position into the worker's: the ``k``-th compute
segment of every copy makes one segment of the group (as long as its
slowest rank), the ``k``-th collective of every copy one collective over
the ``cp`` disjoint groups, run at once. :class:`Lockstep` is a block made of
such copies; :class:`LockstepLoss` the loss.

Shape-only, every copy does the same with the same shapes, so only the first
runs and its tape stands for all of them (when their ranks sit alike on the
nodes, so that their collectives are timed alike). :func:`in_lockstep` is the
general form: any runs on any partition of the worker's ranks (the attention
of one tensor-parallel rank's context-parallel group standing for all, say).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ...comm.layout import GroupLayout, current_layout, placed
from ...nn.param import Param
from ...ops.arrays import Array
from ...ops.tape import CollectiveCall, ComputeSegment, Mark, Tape, Wait, active, recording
from ..tensor import ParallelBlock
from ..tensor.collectives import joined, part_of

T = TypeVar("T")


def side_by_side(runs: Sequence[Callable[[], T]], width: int, same: bool = False) -> list[T]:
    """``[run() for run in runs]``, copy ``c``'s work on ranks ``c width ..`` of the
    worker, as one lockstep group (module docstring); ``same``: every run does the
    same (shape-only), so the first stands for all."""
    maps = [list(range(c * width, (c + 1) * width)) for c in range(len(runs))]
    return in_lockstep(runs, maps, same)


def _outer(maps: list[list[int]]) -> GroupLayout:
    size = sum(map(len, maps))
    return current_layout(size) or GroupLayout.assumed(size)


def alike(maps: list[list[int]]) -> bool:
    """Whether the worker's ranks ``maps[k]`` sit alike for every ``k`` (the same shape
    on nodes and NICs): then copies on them time their collectives alike."""
    return _alike(_outer(maps), tuple(map(tuple, maps)))


@functools.lru_cache(maxsize=1024)
def _alike(outer: GroupLayout, maps: tuple[tuple[int, ...], ...]) -> bool:
    first, *rest = (part_of(outer, list(ranks)).relabelled() for ranks in maps)
    return all(layout == first for layout in rest)


def in_lockstep(
    runs: Sequence[Callable[[], T]], maps: list[list[int]], same: bool = False
) -> list[T]:
    """``[run() for run in runs]``, the work run ``k`` records for its rank ``i``
    recorded for the worker's rank ``maps[k][i]`` (the maps partition the worker's
    ranks), as one lockstep group. With ``same`` (shape-only: every run does the
    same) and ranks that sit alike (:func:`alike`), only the first runs, and its tape
    stands for all."""
    parent = active()
    if parent is None:
        if same:
            return [runs[0]()] * len(runs)
        return [run() for run in runs]
    outer = _outer(maps)
    layouts = [part_of(outer, ranks) for ranks in maps]
    same = same and alike(maps)
    results: list[T] = []
    tapes: list[Tape] = []
    for run, layout in list(zip(runs, layouts, strict=True))[: 1 if same else None]:
        with placed(layout), recording() as tape:
            tape.tag = parent.tag
            results.append(run())
        tapes.append(tape)
    if same:
        results *= len(runs)
        tapes *= len(runs)
    _join(parent, tapes, maps)
    return results


def _join(parent: Tape, tapes: list[Tape], maps: list[list[int]]) -> None:
    """Append the runs' tapes to ``parent`` side by side, item by item."""
    count = len(tapes[0].items)
    if any(len(t.items) != count for t in tapes):
        raise AssertionError("copies in lockstep recorded different work")
    handles: dict[int, int] = {}  # a run's handle -> the worker tape's
    size = sum(map(len, maps))
    for k in range(count):
        items = [t.items[k] for t in tapes]
        first = items[0]
        if isinstance(first, ComputeSegment):
            kernels = {}
            for ranks, segment in zip(maps, items, strict=True):
                for r, ks in segment.kernels.items():
                    kernels[ranks[r]] = ks
            parent.append(ComputeSegment(kernels, first.tag))
        elif isinstance(first, CollectiveCall):
            plan = joined([call.plan for call in items], maps, size)
            handle = first.handle
            if handle >= 0:
                handle = handles.setdefault(handle, parent.new_handle())
            parent.append(
                CollectiveCall(first.op, plan.algorithm, first.kind, plan, first.label, handle)
            )
        elif isinstance(first, Wait):
            parent.append(Wait(handles[first.handle]))
        else:
            assert isinstance(first, Mark)
            parent.append(first)


def _cut(values: list[Any], cp: int) -> list[list[Any]]:
    """Per-rank values of the worker -> each copy's ranks' values."""
    width = len(values) // cp
    return [values[c * width : (c + 1) * width] for c in range(cp)]


def _flat(parts: list[list[Any]]) -> list[Any]:
    return [v for part in parts for v in part]


class Lockstep(ParallelBlock):
    """A block as ``cp`` context-parallel ranks run it: ``copies[c]`` (a block over ``t``
    tensor-parallel ranks, with its own weights and positions) on ranks ``c t ..``.

    ``same``: shape-only, the copies do the same, and the first stands for all
    (the module docstring).
    """

    def __init__(self, copies: list[ParallelBlock], same: bool = False) -> None:
        first = copies[0]
        self.copies = copies
        self.same = same
        self.width = first.ranks
        self.ranks = len(copies) * first.ranks
        self.name = first.name
        self.recomputable = first.recomputable
        self.shards_output = first.shards_output
        #: shape-only copies may be one block: what its ranks borrowed, and their copies
        self._borrowed: dict[int, list[Param]] = {}
        self._owned: dict[tuple[int, int], Param] = {}

    def _run(self, fn: Callable[[int, ParallelBlock], T]) -> list[T]:
        runs = [lambda c=c, block=block: fn(c, block) for c, block in enumerate(self.copies)]
        return side_by_side(runs, self.width, self.same)

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        parts = _cut(xs, len(self.copies))
        outs = self._run(lambda c, block: block.forward(parts[c]))
        return _flat([ys for ys, _ in outs]), _flat([ctx for _, ctx in outs])

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        cp = len(self.copies)
        grads, ctxs = _cut(dys, cp), _cut(ctx, cp)
        outs = self._run(lambda c, block: block.backward_input(grads[c], ctxs[c]))
        return _flat([dxs for dxs, _ in outs]), _flat([w for _, w in outs])

    def backward_weight(self, wctx: list[Any]) -> None:
        wctxs = _cut(wctx, len(self.copies))
        self._run(lambda c, block: block.backward_weight(wctxs[c]))

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        cp = len(self.copies)
        grads, ctxs = _cut(dys, cp), _cut(ctx, cp)
        return _flat(self._run(lambda c, block: block.backward(grads[c], ctxs[c])))

    def params(self, rank: int) -> list[Param]:
        return self.copies[rank // self.width].params(rank % self.width)

    def borrowed(self, rank: int) -> list[Param]:
        r = rank % self.width
        if not self._shared:
            return self.copies[rank // self.width].borrowed(r)
        if r not in self._borrowed:  # as it was before any rank took its own copy
            self._borrowed[r] = self.copies[0].borrowed(r)
        return self._borrowed[r]

    def own_copy(self, rank: int, param: Param) -> Param:
        """A copy of a borrowed weight for ``rank``; copies that are one block (shape-only)
        share it, as they share the block's weights."""
        if not self._shared:
            return self.copies[rank // self.width].own_copy(rank % self.width, param)
        key = (rank % self.width, id(param))
        if key not in self._owned:
            self._owned[key] = self.copies[0].own_copy(rank % self.width, param)
        return self._owned[key]

    @property
    def _shared(self) -> bool:
        return all(block is self.copies[0] for block in self.copies)

    def configure(self, selective: bool) -> None:
        for block in self.copies:
            block.configure(selective)

    def full_params(self) -> dict[str, Array]:
        return self.copies[0].full_params()


class LockstepLoss:
    """The loss as ``cp`` context-parallel ranks compute it: copy ``c`` (the loss of a
    tensor-parallel group) on the logits and targets of its tokens.

    Each rank's value is the mean over its ``b s / cp`` tokens, and the
    gradient each computes is that mean's (the reduction over ``dp x cp``
    averages them, :mod:`simulator.runtime.data`). The ranks hold equally many
    tokens, so the micro-batch's loss is the mean of their means: every rank
    reports it (the one number Megatron-LM averages over the group for its log;
    bookkeeping, not a simulated kernel).
    """

    name = "cross_entropy"

    def __init__(self, copies: list[Any], width: int, same: bool = False) -> None:
        self.copies = copies
        self.width = width
        self.same = same

    def forward(self, preds: list[Array], targets: list[Array]) -> tuple[list[Array], list[Any]]:
        cp = len(self.copies)
        xs, ys = _cut(preds, cp), _cut(targets, cp)
        runs = [
            lambda c=c, loss=loss: loss.forward(xs[c], ys[c]) for c, loss in enumerate(self.copies)
        ]
        outs = side_by_side(runs, self.width, self.same)
        values = [values[0] for values, _ in outs]
        mean = values[0] if self.same else sum(values) / cp
        return [mean] * len(preds), _flat([ctx for _, ctx in outs])

    def backward(self, ctx: list[Any], scale: float) -> list[Array]:
        ctxs = _cut(ctx, len(self.copies))
        runs = [
            lambda c=c, loss=loss: loss.backward(ctxs[c], scale)
            for c, loss in enumerate(self.copies)
        ]
        return _flat(side_by_side(runs, self.width, self.same))
