"""Collectives between workers: everyone arrives, the collective runs, everyone resumes.

A gradient all-reduce over data-parallel replicas, the tied embedding's sum
over the first and last stage, ZeRO's parameter gathers: each is a
*meeting*. Every member hands in its payload with :meth:`Meetings.launch`
and gets a :class:`Handle` back at once, so it may keep computing (a DDP
bucket launched during backward overlaps the rest of it). When the last
member has arrived, the collective runs -- its numbers and its time on the
links -- and the handle fires when it ends: one event, whoever waits on it.
:meth:`Meetings.wait` blocks until handles have fired.

A simulated worker may stand for several identical replicas
(:mod:`simulator.runtime.fold`); it then hands in all their payloads at
once, and the meeting runs as soon as it has them all.

*When in the moment.* The collective books its links after everything else
that happens at the same simulated moment (a SimPy event of lower priority
than any other): the replicas' own messages of that moment are on the links
first, whichever replica arrived last. So every replica sees its links in the
same state, and folded replicas stay exact when the data-parallel traffic
overlaps their own (gradient buckets, ZeRO-2 and 3).

Waiting is accounted as docs/design.md defines it: while the collective is under
way the wait is *exposed communication*; before it starts (a member is still
computing) it is idle time -- the bubble of load imbalance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from ..engine import Process
from ..parallel.worker import Worker
from .intervals import union
from .workers import SimWorker

#: The priority of a meeting's booking: after every ordinary event of its moment.
LATE = simpy.events.NORMAL + 1

#: A collective's body: every member's payload in (member order), (results, end time) out.
Body = Callable[[list[Any]], tuple[list[Any], float]]


@dataclass(eq=False)
class Handle:
    """A launched collective: fires when it ends; ``results`` by worker index."""

    event: simpy.Event
    payloads: dict[int, Any] = field(default_factory=dict)
    results: dict[int, Any] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0


class Meetings:
    """Open meetings of one step, by key (see the module docstring)."""

    def __init__(
        self, env: simpy.Environment, fire_at: Callable[[simpy.Event, float], None]
    ) -> None:
        self.env = env
        self._fire_at = fire_at
        self._open: dict[tuple, Handle] = {}

    def launch(
        self,
        key: tuple,
        group: Sequence[Worker],
        payloads: dict[int, Any],
        body: Body,
    ) -> Handle:
        """Hand in ``payloads`` (by worker index) for the collective ``key`` of ``group``."""
        handle = self._open.get(key)
        if handle is None:
            handle = self._open[key] = Handle(self.env.event())
        handle.payloads.update(payloads)
        if len(handle.payloads) == len(group):
            del self._open[key]
            booking = self.env.event()
            booking.callbacks.append(lambda _: self._run(handle, group, body))
            booking._ok, booking._value = True, None
            self.env.schedule(booking, priority=LATE)
        return handle

    def _run(self, handle: Handle, group: Sequence[Worker], body: Body) -> None:
        """Run a meeting whose members have all arrived (at the end of the moment)."""
        results, end = body([handle.payloads[m.index] for m in group])
        handle.results = {m.index: r for m, r in zip(group, results, strict=True)}
        handle.payloads = {}
        handle.start, handle.end = self.env.now, end
        self._fire_at(handle.event, end)

    def wait(self, sw: SimWorker, handles: Sequence[Handle], what: str) -> Process:
        """Block until every handle has fired; exposed time is charged to ``sw``."""
        begin = self.env.now
        sw.waiting_for = what
        for handle in handles:
            if not handle.event.processed:
                yield handle.event
        sw.waiting_for = ""
        now = self.env.now
        sw.exposed_s += sum(
            max(0.0, min(end, now) - max(start, begin))
            for start, end in union([(h.start, h.end) for h in handles])
        )

    def meet(
        self,
        sw: SimWorker,
        key: tuple,
        group: Sequence[Worker],
        payloads: dict[int, Any],
        body: Body,
        what: str,
    ) -> Process:
        """A blocking collective: :meth:`launch`, then :meth:`wait`; returns the handle."""
        handle = self.launch(key, group, payloads, body)
        yield from self.wait(sw, [handle], what)
        return handle

    def stuck(self) -> list[tuple]:
        """Keys of meetings some member never reached (for deadlock reports)."""
        return list(self._open)
