"""Replaying a tape: the time a piece of layer code takes on a worker's devices.

Layer code runs eagerly and leaves a tape (:mod:`simulator.tape`), priced once
into a :class:`~simulator.runtime.tapes.CompiledTape`. :meth:`Replay.run`
spends that time on a simulated worker, item by item:

* a compute segment occupies the worker's compute stream: one trace row, one
  timeout (stretched when a straggler slows the worker);
* a collective of the worker's own tensor-parallel group books its links; the
  worker waits for it -- exposed communication -- unless the collective is
  asynchronous, in which case it runs alongside the compute that follows,
  until the tape's wait for it;
* a mark lets the data-parallel variant act (launch a gradient bucket, gather
  ZeRO-3 parameters).

Replay also keeps what a step counts as it goes: FLOPs, losses and the first
duration of every action kind (:class:`~simulator.runtime.record.Tally`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..comm.layout import GroupLayout, placed
from ..engine import Process
from ..parallel.pipeline.actions import Action
from ..tape import recording
from ..trace import COMPUTE
from .tapes import COLLECTIVE, MARK, SEGMENT, WAIT, CompiledTape, compile_tape
from .workers import SimWorker

if TYPE_CHECKING:
    from .core import Runtime


class Replay:
    """Priced tapes and their replay on workers (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.env = runtime.env
        self.engine = runtime.engine
        #: shape-only: results and tapes of code whose shapes never change, by key
        self.tapes: dict[tuple, tuple[Any, CompiledTape]] = {}
        self._labels: dict[tuple, int] = {}
        #: collectives booked as one block: each worker's booking of each tape's
        #: collective, worked out once (:meth:`simulator.engine.Engine.fused`)
        #: (shape-only tapes are priced once, so their collectives repeat)
        self.fused = self.engine.collective_detail == "fused" and runtime.shape_only
        self._bookings: dict[tuple[int, int], Any] = {}
        self._calls: list[Any] = []

    # -- pricing ---------------------------------------------------------------------
    def price(
        self, fn: Callable[[], Any], layout: GroupLayout | None = None
    ) -> tuple[Any, CompiledTape]:
        """Run ``fn`` on a new tape and price the tape; its collectives run over
        ``layout``, the placement of the worker's tensor-parallel group."""
        with placed(layout), recording() as tape:
            result = fn()
        return result, compile_tape(tape, self.engine.cost, self.rt.sync.wants_marks)

    def priced(
        self, key: tuple, fn: Callable[[], Any], layout: GroupLayout | None = None
    ) -> tuple[Any, CompiledTape]:
        """:meth:`price`; in shape-only mode once per ``key`` and layout, then from the
        cache."""
        if not self.rt.shape_only:
            return self.price(fn, layout)
        hit = self.tapes.get((key, layout))
        if hit is None:
            hit = self.tapes[key, layout] = self.price(fn, layout)
        return hit

    # -- the trace -------------------------------------------------------------------
    def label(self, action: Action | str, tag: str, cat: str = "") -> int:
        """The trace label of compute rows: a pipeline action's (its name shows each
        row's micro-batch), or other work named ``action`` of kind ``cat``; ``tag``
        marks recomputation."""
        is_action = isinstance(action, Action)
        key = (action.stage, action.kind, tag) if is_action else (action, tag, cat)
        label = self._labels.get(key)
        if label is None:
            trace = self.engine.trace
            if is_action:
                name = f"{action.stage}{action.kind}{{mb}}"
                label = trace.label_id(COMPUTE, name, tag or str(action.kind), chunk=action.stage)
            else:
                label = trace.label_id(COMPUTE, action, tag or cat)
            self._labels[key] = label
        return label

    def row(
        self, sw: SimWorker, action: Action | str, tag: str, seconds: float, cat: str = ""
    ) -> None:
        """One compute row in the trace, from now, for ``seconds``."""
        now = self.env.now
        mb = action.mb if isinstance(action, Action) else -1
        trace = self.engine.trace
        trace.record(trace.track_id(sw.group, self.label(action, tag, cat)), now, now + seconds, mb)

    # -- replay ----------------------------------------------------------------------
    def run(
        self, sw: SimWorker, compiled: CompiledTape, action: Action | str, cat: str = ""
    ) -> Process:
        """Spend the time ``compiled`` describes on ``sw``'s devices (module docstring);
        ``action`` names the rows: a pipeline action, or work such as ``"optimizer"``
        of kind ``cat``."""
        env, engine = self.env, self.engine
        self.rt.tally.flops(sw, compiled)
        pending: dict[int, float] = {}  # asynchronous collectives: handle -> end
        for item in compiled.items:
            kind = item[0]
            if kind == SEGMENT:
                _, seconds, tag = item
                if sw.pace is not None:
                    seconds = sw.pace(seconds)
                self.row(sw, action, tag, seconds, cat)
                sw.compute_s += seconds
                yield env.timeout(seconds)
            elif kind == COLLECTIVE:
                call = item[1]
                if self.fused:
                    booking = self._bookings.get((id(call), sw.index))
                    if booking is None:
                        booking = engine.fused(
                            call.plan, sw.devices, call.kind, call.label, sw.shown
                        )
                        self._bookings[id(call), sw.index] = booking
                        self._calls.append(call)  # alive as long as its id is a key
                    end = engine.book(booking) if call.plan.transfers else env.now
                else:
                    end = engine.collective(call.plan, sw.devices, call.kind, call.label, sw.shown)
                if call.handle >= 0:
                    pending[call.handle] = end
                else:
                    yield from self.wait(sw, end, f"a {call.op} of its group")
            elif kind == WAIT:
                yield from self.wait(sw, pending.pop(item[1]), "an asynchronous collective")
            elif kind == MARK:
                hook = self.rt.sync.on_mark(sw, item[1])
                if hook is not None:
                    yield from hook

    def wait(self, sw: SimWorker, end: float, what: str) -> Process:
        """Block ``sw`` until its own group's collective ends: exposed communication."""
        now = self.env.now
        if end > now:
            sw.waiting_for = what
            yield self.env.timeout(end - now)
            sw.waiting_for = ""
            sw.exposed_s += end - now
