"""The collectives of tensor parallelism: f and g around every parallel region.

Megatron-LM (Shoeybi et al. 2019, sec. 3, fig. 3) splits the two GEMMs of a
transformer MLP, ``Y = act(X A)`` and ``Z = Y B``, over ``t`` ranks: ``A`` by
columns, so rank ``r`` computes ``Y_r = act(X A_r)`` on its own (``act`` is
elementwise), and ``B`` by rows, so rank ``r``'s ``Y_r B_r`` is a partial
sum of ``Z``. Attention splits the same way by heads. One pair of GEMMs then
needs exactly two collectives, at two *conjugate* operators:

* **f**, entering the parallel region before ``A``: identity forward (every
  rank already holds ``X``), all-reduce backward (each rank's ``dX`` is a
  partial sum);
* **g**, leaving it after ``B``: all-reduce forward (adds the partial sums),
  identity backward (every rank needs the whole ``dZ``).

A worker is a lockstep group of ``t`` devices (docs/design.md, key decision 3), so
every value here is a list with one array per rank, ``xs[r]``, and every
rank's work runs under :func:`~simulator.ops.tape.on_rank`. Collectives run
through :mod:`simulator.comm` on the real arrays and are recorded on the tape
as :class:`~simulator.ops.tape.CollectiveCall` of kind ``"tp"``; the runtime
replays them on the group's links, in the middle of the layer's forward or
backward, where they show on the timeline. Per transformer layer and
micro-batch that is four all-reduces of ``b s h`` elements, which a ring
sends ``2 (t-1)/t`` times each: ``8 b s h (t-1)/t`` elements per device
(Narayanan et al. 2021, sec. 3.2).

**Sequence parallelism** (Korthikanti et al. 2022, sec. 4.2.2, fig. 5) splits
what lies *between* the parallel regions -- layer norms, dropouts, residual
additions -- along the sequence. f becomes an all-gather forward and a
reduce-scatter backward (their ``g``), g a reduce-scatter forward and an
all-gather backward (their ``g-bar``). An all-reduce *is* a reduce-scatter
followed by an all-gather, so the bytes of the conjugates are unchanged.
The column-parallel GEMM's weight gradient needs the whole sequence of its
input. Korthikanti et al. (2022, table 2) count only the rank's part of it
among the stored activations, so it is all-gathered once more in the
weight-gradient pass, as Megatron-LM's
``LinearWithGradAccumulationAndAsyncCommunication`` does: ``2 b s h (t-1)/t``
more elements per layer, the price of ``sbh(34 + 5as/h)/t`` activation bytes
instead of ``sbh(10 + 24/t + 5as/(ht))``.

This module holds the collectives on the tape and f and g
(:class:`Region`); :mod:`.linear` builds the two parallel GEMMs on them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from ... import comm
from ...comm.builder import intern, interned
from ...comm.layout import GroupLayout, current_layout
from ...ops.arrays import Array
from ...ops.tape import CollectiveCall, Wait, on_rank, record
from ...transfer import Round, TransferPlan

T = TypeVar("T")
#: Megatron-LM runs tensor-parallel collectives through NCCL, whose tuner picks the
#: algorithm per message size and group layout (:mod:`simulator.comm.tuner`).
ALGORITHM = "auto"


# -- collectives on the tape ------------------------------------------------------------------
def collective(op: str, xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """Run ``op`` over the ranks' arrays and record it for the runtime to time; with a
    ``handle`` it runs alongside what follows until :func:`wait` (the numbers are
    computed now either way)."""
    outs, plan = comm.collective(op, xs, ALGORITHM)
    record(CollectiveCall(op, plan.algorithm, "tp", plan, label, handle))
    return outs


def in_groups(
    op: str,
    xs: list[Array],
    groups: list[list[int]],
    label: str,
    handle: int = -1,
    kind: str = "tp",
    algorithm: str = ALGORITHM,
) -> list[Array]:
    """Run ``op`` inside each group of ranks at once (disjoint groups of the worker's
    ranks; ranks in no group keep their array), recorded as one collective of
    ``kind`` (with a ``handle``, asynchronous, as :func:`collective`).

    Each group runs its own algorithm on its own ranks' places in the worker's
    layout (:func:`simulator.comm.collective`); the plans are joined into one
    over the whole worker (:func:`joined`).
    """
    outer = current_layout(len(xs)) or GroupLayout.assumed(len(xs))
    outs = list(xs)
    plans = []
    for members in groups:
        results, plan = comm.collective(
            op, [xs[r] for r in members], algorithm, layout=part_of(outer, members)
        )
        for r, y in zip(members, results, strict=True):
            outs[r] = y
        plans.append(plan)
    plan = joined(plans, groups, len(xs))
    record(CollectiveCall(op, plan.algorithm, kind, plan, label, handle))
    return outs


def part_of(layout: GroupLayout, members: list[int]) -> GroupLayout:
    """The layout of the ranks ``members`` of a group placed as ``layout``."""
    return _part_of(layout, tuple(members))


@functools.lru_cache(maxsize=4096)
def _part_of(layout: GroupLayout, members: tuple[int, ...]) -> GroupLayout:
    return replace(
        layout,
        nodes=tuple(layout.nodes[r] for r in members),
        nics=tuple(layout.nics[r] for r in members),
    )


def joined(plans: list[TransferPlan], groups: list[list[int]], size: int) -> TransferPlan:
    """The plans of disjoint groups of a worker's ``size`` ranks as one plan over the
    worker: each group's messages renumbered to worker ranks. The groups share no
    rank, so nothing orders one group's messages after another's. Plans are shared
    objects (:func:`simulator.comm.builder.intern`): a joined plan seen before is
    not built again."""
    first = plans[0]
    key = ("groups", tuple((tuple(m), p.key) for p, m in zip(plans, groups, strict=True)))
    algorithm = plans[-1].algorithm
    channels = max(p.channels for p in plans)
    known = interned(TransferPlan(first.op, algorithm, size, (), channels, key))
    if known is not None:
        return known
    rounds: list[Round] = []
    for plan, members in zip(plans, groups, strict=True):
        rename = tuple(members)
        rounds += [
            replace(
                rd,
                src=tuple(rename[i] for i in rd.src),
                dst=tuple(rename[i] for i in rd.dst),
            )
            for rd in plan.rounds
        ]
    return intern(TransferPlan(first.op, algorithm, size, tuple(rounds), channels, key))


def wait(handle: int) -> None:
    """The code needs the asynchronous collective ``handle``'s result from here on."""
    record(Wait(handle))


def all_gather_sequence(xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """``(b, s/t, ...)`` sequence shards -> the whole ``(b, s, ...)`` on every rank.

    Collectives cut and join along the first axis; Megatron-LM keeps its
    activations sequence-first ``[s, b, h]`` for that reason. Ours are
    ``(b, s, h)``, so they are viewed sequence-first around the collective
    (a view, so no kernel).
    """
    outs = collective("all_gather", [x.swapaxes(0, 1) for x in xs], label, handle)
    return [out.swapaxes(0, 1) for out in outs]


def reduce_scatter_sequence(xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """Sum the ranks' ``(b, s, ...)`` arrays; rank ``r`` keeps positions ``r s/t .. (r+1) s/t``."""
    b, s, *rest = xs[0].shape
    outs = collective("reduce_scatter", [x.swapaxes(0, 1) for x in xs], label, handle)
    return [out.reshape(s // len(xs), b, *rest).swapaxes(0, 1) for out in outs]


def per_rank(t: int, fn: Callable[[int], T]) -> list[T]:
    """``[fn(0), ..., fn(t-1)]``, the ops of call ``r`` attributed to rank ``r``."""
    out = []
    for r in range(t):
        with on_rank(r):
            out.append(fn(r))
    return out


@dataclass(frozen=True)
class Region:
    """The conjugate operators f and g around a tensor-parallel region.

    ``where`` names the layer in the collectives' labels, e.g.
    ``"f: all-reduce dx (layer0 attention)"``. ``overlap`` lets the backward
    of a column-parallel GEMM run its collectives alongside its GEMMs, as
    Megatron-LM does (:meth:`.linear.ColumnParallel.backward`). ``pipelined``
    (sequence parallelism only) cuts the all-gathers and reduce-scatters the
    GEMMs wait for into chunks under the GEMMs' chunks, as Megatron-Core's
    ``--tp-comm-overlap`` does (:mod:`.pipelined`).
    """

    t: int
    sequence_parallel: bool = False
    overlap: bool = True
    pipelined: bool = False

    def __post_init__(self) -> None:
        assert self.sequence_parallel or not self.pipelined, "pipelining needs sequence parallelism"

    def enter(self, xs: list[Array], where: str) -> list[Array]:
        """f forward: identity, or all-gather the sequence."""
        if self.sequence_parallel:
            return all_gather_sequence(xs, f"f: all-gather x ({where})")
        return xs

    def enter_backward(self, dxs: list[Array], where: str, handle: int = -1) -> list[Array]:
        """f backward: add the ranks' partial input gradients."""
        if self.sequence_parallel:
            return reduce_scatter_sequence(dxs, f"f: reduce-scatter dx ({where})", handle)
        return collective("all_reduce", dxs, f"f: all-reduce dx ({where})", handle)

    def leave(self, ys: list[Array], where: str) -> list[Array]:
        """g forward: add the ranks' partial outputs."""
        if self.sequence_parallel:
            return reduce_scatter_sequence(ys, f"g: reduce-scatter y ({where})")
        return collective("all_reduce", ys, f"g: all-reduce y ({where})")

    def leave_backward(self, dys: list[Array], where: str) -> list[Array]:
        """g backward: identity, or all-gather the sequence."""
        if self.sequence_parallel:
            return all_gather_sequence(dys, f"g: all-gather dy ({where})")
        return dys

    def regather(self, xs: list[Array], where: str, handle: int = -1) -> list[Array]:
        """The whole input again for a weight gradient (sequence parallelism keeps a shard)."""
        if self.sequence_parallel:
            return all_gather_sequence(xs, f"all-gather x again for dW ({where})", handle)
        return xs
