"""What a recorded tape costs, worked out once.

Layer code records a :class:`~simulator.ops.tape.Tape`: compute segments (kernels
per tensor-parallel rank), collectives issued inside layers, and marks. To
*replay* it the runtime needs the seconds of every segment on the device's
roofline and the FLOPs it counts. :func:`compile_tape` prices the tape once
and keeps only what replay needs, as small tuples:

* ``(SEGMENT, seconds, tag)`` -- compute on the worker's compute stream;
* ``(COLLECTIVE, call)`` -- a tensor-parallel collective over the worker's
  devices (:class:`~simulator.ops.tape.CollectiveCall`), which the worker waits
  for, unless the call has a handle: then it runs alongside the compute
  that follows until
* ``(WAIT, handle)`` -- where the code needs that collective's result;
* ``(MARK, mark)`` -- a point data-parallel hooks care about; dropped when no
  hook listens, so that the segments around it merge;
* ``(EXCHANGE, exchange)`` -- an all-to-all with the other ranks of an
  expert-parallel group (:class:`~simulator.parallel.expert.Exchange`), which
  the worker waits for unless it has a handle, as a collective.

A shape-only run replays the same tape for every micro-batch (their shapes
are equal), so this is done once per stage and action kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.cost import Cost
from ..ops.tape import CollectiveCall, ComputeSegment, Mark, Tape, Wait
from ..parallel.expert import Exchange

SEGMENT, COLLECTIVE, WAIT, MARK, EXCHANGE = 0, 1, 2, 3, 4
RECOMPUTE = "recompute"


@dataclass(frozen=True)
class CompiledTape:
    """A tape's replay items and totals.

    Attributes:
        items: the replay items (module docstring).
        seconds: total compute seconds (segments only).
        model_flops: GEMM FLOPs of every rank as the model's formula counts them,
            recomputation excluded (MFU; :attr:`~simulator.ops.tape.Kernel.model_flops`).
        hardware_flops: the FLOPs the kernels execute, recomputation included (HFU).
        simple: one segment and nothing else: replay is a single timeout.
    """

    items: tuple[tuple[Any, ...], ...]
    seconds: float
    model_flops: float
    hardware_flops: float

    @property
    def simple(self) -> bool:
        return len(self.items) == 1 and self.items[0][0] == SEGMENT


def compile_tape(tape: Tape | list[Any], cost: Cost, keep_marks: bool) -> CompiledTape:
    """Price ``tape`` (or a run of a tape's items) on ``cost``'s devices; keep marks only
    when ``keep_marks``."""
    items: list[tuple[Any, ...]] = []
    seconds = model = hardware = 0.0
    for item in tape if isinstance(tape, list) else tape.items:
        if isinstance(item, ComputeSegment):
            t = cost.segment_time(item)
            kernels = [k for ks in item.kernels.values() for k in ks]
            hardware += sum(k.flops for k in kernels)
            if item.tag != RECOMPUTE:
                model += sum(k.model_flops for k in kernels)
            if t <= 0:
                continue
            seconds += t
            last = items[-1] if items else None
            if last is not None and last[0] == SEGMENT and last[2] == item.tag:
                items[-1] = (SEGMENT, last[1] + t, item.tag)
            else:
                items.append((SEGMENT, t, item.tag))
        elif isinstance(item, CollectiveCall):
            items.append((COLLECTIVE, item))
        elif isinstance(item, Wait):
            items.append((WAIT, item.handle))
        elif isinstance(item, Mark) and keep_marks:
            items.append((MARK, item))
        elif isinstance(item, Exchange):
            items.append((EXCHANGE, item))
    return CompiledTape(tuple(items), seconds, model, hardware)
