"""Replaying a tape: the time a piece of layer code takes on a worker's devices.

Layer code runs eagerly and leaves a tape (:mod:`simulator.ops.tape`), priced once
into a :class:`~simulator.runtime.tapes.CompiledTape`. :meth:`Replay.run`
spends that time on a simulated worker, item by item:

* a compute segment occupies the worker's compute stream: one trace row, one
  timeout (stretched when a straggler slows the worker, and while one of the
  tape's asynchronous collectives is in flight beside it on a device that
  states ``overlap_slowdown``: :func:`~simulator.engine.cost.overlapped`);
* a collective of the worker's own tensor-parallel group books its links; the
  worker waits for it -- exposed communication -- unless the collective is
  asynchronous, in which case it runs alongside the compute that follows,
  until the tape's wait for it;
* a mark lets the data-parallel variant act (launch a gradient bucket, gather
  ZeRO-3 parameters);
* an exchange meets the other ranks of the worker's expert-parallel group for
  an all-to-all (:mod:`simulator.runtime.experts`), waited for now or, with a
  handle, at the tape's wait for it.

Replay also keeps what a step counts as it goes: FLOPs, losses and the first
duration of every action kind (:class:`~simulator.runtime.tally.Tally`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..comm.layout import placed
from ..engine import Engine, Process
from ..engine.cost import overlapped
from ..engine.events import timeout, until
from ..engine.trace import COMPUTE
from ..ops.tape import Mark, recording
from ..parallel.pipeline.actions import Action
from ..parallel.reuse import BlockReuse, reusing
from .tally import Tally
from .tapes import COLLECTIVE, EXCHANGE, MARK, SEGMENT, WAIT, CompiledTape, compile_tape
from .workers import SimWorker

#: What hears a tape's marks: a process when reacting takes time, else None.
MarkHook = Callable[[SimWorker, Mark], Process | None]


class Replay:
    """Priced tapes and their replay on workers (see the module docstring): time spent
    on ``engine``, FLOPs counted in ``tally``; without ``numerics`` every tape is
    priced once and its replay script kept."""

    def __init__(self, engine: Engine, tally: Tally, numerics: bool) -> None:
        self.engine = engine
        self.env = engine.env
        self.tally = tally
        self.numerics = numerics
        #: shape-only: results and tapes of code whose shapes never change, by key,
        #: layout and cost
        self.tapes: dict[tuple, tuple[Any, CompiledTape]] = {}
        self._labels: dict[tuple, int] = {}
        #: shape-only tapes are priced once and replayed again and again: their
        #: scripts (:meth:`_script`) are kept, with each collective booked as one block
        #: worked out once (:meth:`simulator.engine.Engine.fused`) when so timed
        self.repeats = not numerics
        self.fused = engine.collective_detail == "fused" and not numerics
        self._scripts: dict[tuple[int, int], tuple[CompiledTape, list[tuple]]] = {}
        #: shape-only: each kind of block is traced twice, then copied
        #: (:mod:`simulator.parallel.reuse`)
        self.reuse = None if numerics else BlockReuse()
        #: who hears the tapes' marks (None: nobody, and tapes keep none)
        self.on_mark: MarkHook | None = None
        #: who runs the tapes' expert-parallel exchanges (:mod:`.experts`)
        self.exchanges: Any = None
        #: whether a wait for a blocking collective and the segment after it may be one
        #: event (:meth:`run`); the runtime turns it off when a device may fail, since
        #: a failure during the wait must find the segment not yet started
        self.joins = True

    def hear_marks(self, hook: MarkHook) -> None:
        """Let ``hook`` hear every mark of the tapes priced from now on (a data-parallel
        variant that launches buckets or gathers parameters during backward: built
        after this replay, on which it times its own work)."""
        self.on_mark = hook

    def hear_exchanges(self, exchanges: Any) -> None:
        """Let ``exchanges`` (:class:`~.experts.ExpertExchanges`) run the tapes'
        all-to-alls between the workers of an expert-parallel group."""
        self.exchanges = exchanges

    # -- pricing ---------------------------------------------------------------------
    def price(self, fn: Callable[[], Any], sw: SimWorker) -> tuple[Any, CompiledTape]:
        """Run ``fn`` on a new tape and price the tape on ``sw``'s devices; its
        collectives run over ``sw``'s layout, the placement of its tensor-parallel
        group."""
        with placed(sw.layout), recording() as tape, reusing(self.reuse):
            result = fn()
        return result, compile_tape(tape, sw.cost, self.on_mark is not None)

    def priced(self, key: tuple, fn: Callable[[], Any], sw: SimWorker) -> tuple[Any, CompiledTape]:
        """:meth:`price`; in shape-only mode once per ``key``, layout and kinds of device
        (``sw.cost``), then from the cache."""
        if self.numerics:
            return self.price(fn, sw)
        where = (key, sw.layout, sw.cost)
        hit = self.tapes.get(where)
        if hit is None:
            hit = self.tapes[where] = self.price(fn, sw)
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

    # -- replay ----------------------------------------------------------------------
    def run(
        self, sw: SimWorker, compiled: CompiledTape, action: Action | str, cat: str = ""
    ) -> Process:
        """Spend the time ``compiled`` describes on ``sw``'s devices (module docstring);
        ``action`` names the rows: a pipeline action, or work such as ``"optimizer"``
        of kind ``cat``."""
        env, engine = self.env, self.engine
        self.tally.flops(sw, compiled)
        mb = action.mb if isinstance(action, Action) else -1
        record = engine.trace.record
        pending: dict[int, Any] = {}  # asynchronous collectives: handle -> end (or meeting)
        # a blocking collective's wait, not yet spent, when it may join the next segment
        joins = self.joins and sw.stream is None and sw.pace is None
        resume: float | None = None
        # compute beside this tape's asynchronous collectives: when the last ends
        beside = sw.cost.overlap_slowdown
        busy = 0.0
        for step in self._script(sw, compiled, action, cat):
            kind = step[0]
            if kind == SEGMENT:
                _, seconds, track = step
                if resume is not None:
                    # the wait and this segment as one event, at the time the two
                    # would end: nothing this worker does between them is seen by
                    # anyone else (no booking, no message, no shared stream)
                    if busy > resume:
                        seconds = overlapped(resume, seconds, busy, beside)
                    record(track, resume, resume + seconds, mb)
                    sw.compute_s += seconds
                    yield until(env, resume + seconds)
                    resume = None
                    continue
                if sw.pace is not None:
                    seconds = sw.pace(seconds)
                stream = sw.stream
                if stream is not None:  # an overlapped pair: one half computes at a time
                    turn = stream.request()
                    yield turn
                now = env._now
                if busy > now:
                    seconds = overlapped(now, seconds, busy, beside)
                record(track, now, now + seconds, mb)
                sw.compute_s += seconds
                yield timeout(env, seconds)
                if stream is not None:
                    sw.held[1].append((now, now + seconds))
                    stream.release(turn)
                continue
            if resume is not None:  # anything else starts when the wait is over
                yield until(env, resume)
                resume = None
            if kind == COLLECTIVE:
                _, call, booking, what = step
                if booking is not None:
                    end = engine.book(booking)
                elif call.plan.messages:
                    end = engine.collective(call.plan, sw.devices, call.kind, call.label, sw.shown)
                else:
                    end = env._now
                if call.handle >= 0:
                    pending[call.handle] = end
                    if beside and end > busy:
                        busy = end
                    continue
            elif kind == WAIT:
                end = pending.pop(step[1])
                if isinstance(end, tuple):
                    yield from self.exchanges.wait(sw, *end)
                    continue
                what = "an asynchronous collective"
            elif kind == EXCHANGE:
                item = step[1]
                meeting = self.exchanges.launch(sw, item, (action, item.label))
                if item.handle >= 0:
                    pending[item.handle] = (meeting, item)
                else:
                    yield from self.exchanges.wait(sw, meeting, item)
                continue
            else:
                assert kind == MARK and self.on_mark is not None  # kept only for a hook
                reaction = self.on_mark(sw, step[1])
                if reaction is not None:
                    yield from reaction
                continue
            # a blocking collective, or the wait for an asynchronous one: self.wait,
            # written out (it runs once per tensor-parallel collective of a large run)
            now = env._now
            if end > now:
                if joins:
                    sw.expose(now, end)
                    resume = now + (end - now)  # when timeout(end - now) would fire
                    continue
                sw.waiting_for = what
                yield timeout(env, end - now)
                sw.waiting_for = ""
                sw.expose(now, end)
        if resume is not None:
            yield until(env, resume)

    def _script(
        self, sw: SimWorker, compiled: CompiledTape, action: Action | str, cat: str
    ) -> list[tuple]:
        """The tape's items with what they need on ``sw`` worked out: a segment's trace
        track, a collective's booking (``collective_detail = "fused"``). Shape-only
        tapes repeat, so their scripts are kept, one per tape and worker."""
        key = (id(compiled), sw.index)
        if self.repeats:
            hit = self._scripts.get(key)
            if hit is not None and hit[0] is compiled:
                return hit[1]
        trace, engine = self.engine.trace, self.engine
        script: list[tuple] = []
        for item in compiled.items:
            kind = item[0]
            if kind == SEGMENT:
                _, seconds, tag = item
                track = trace.track_id(sw.group, self.label(action, tag, cat))
                script.append((SEGMENT, seconds, track))
            elif kind == COLLECTIVE:
                call = item[1]
                booking = None
                if self.fused and call.plan.messages:
                    booking = engine.fused(call.plan, sw.devices, call.kind, call.label, sw.shown)
                script.append((COLLECTIVE, call, booking, f"a {call.op} of its group"))
            else:
                script.append(item)
        if self.repeats:
            self._scripts[key] = (compiled, script)  # the tape stays alive with its id
        return script

    def wait(self, sw: SimWorker, end: float, what: str) -> Process:
        """Block ``sw`` until its own group's collective ends: exposed communication."""
        now = self.env._now
        if end > now:
            sw.waiting_for = what
            yield timeout(self.env, end - now)
            sw.waiting_for = ""
            sw.expose(now, end)
