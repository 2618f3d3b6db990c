"""Collectives between workers: everyone arrives, the collective runs, everyone resumes.

A gradient all-reduce over data-parallel replicas, the tied embedding's sum
over the first and last stage, ZeRO's parameter gathers: each is a
*meeting*. Every member hands in its payload with :meth:`Meetings.launch`
and gets a :class:`Handle` back at once, so it may keep computing (a DDP
bucket launched during backward overlaps the rest of it). When the last
member has arrived, the collective runs -- its numbers and its time on the
links, usually by :meth:`Meetings.per_rank` -- and the handle fires when it
ends: one event, whoever waits on it. :meth:`Meetings.wait` blocks until
handles have fired.

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
way the wait is *exposed communication*, recorded on the worker
(:meth:`~simulator.runtime.workers.SimWorker.expose`); before it starts (a
member is still computing) it is idle time -- the bubble of load imbalance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from .. import comm
from ..comm.layout import Layouts
from ..engine import Engine, Process, fire_at
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


#: One collective of :meth:`Meetings.per_rank`: which of a member's payloads it joins,
#: its devices, its results and its transfer plan.
Collective = tuple[Sequence[int], tuple[int, ...], list[Any], Any]


class Meetings:
    """Open meetings of one step, by key (see the module docstring); their collectives
    run on ``engine``, placed where ``layouts`` says their devices sit."""

    def __init__(self, engine: Engine, layouts: Layouts) -> None:
        self.engine = engine
        self.env = engine.env
        self.layouts = layouts
        self._open: dict[tuple, Handle] = {}
        #: per_rank's collectives of ``stable`` payloads, by the members' payloads' identity
        self._stable: dict[tuple, tuple[list[list[Any]], list[Collective]]] = {}

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
        fire_at(self.env, handle.event, end)

    def wait(self, sw: SimWorker, handles: Sequence[Handle], what: str) -> Process:
        """Block until every handle has fired; the stretches in which one of them was
        under way are ``sw``'s exposed communication."""
        begin = self.env.now
        sw.waiting_for = what
        for handle in handles:
            if not handle.event.processed:
                yield handle.event
        sw.waiting_for = ""
        now = self.env.now
        sw.expose_all(
            (max(start, begin), min(end, now))
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

    def per_rank(
        self,
        op: str,
        algorithm: str,
        group: Sequence[Worker],
        payloads: list[list[Any]],
        kind: str,
        label: str,
        timed: bool = True,
        ranks: Sequence[int] | None = None,
        root: int = 0,
        together: Sequence[Sequence[int]] | None = None,
        stable: bool = False,
    ) -> tuple[list[list[Any]], float]:
        """Run ``op`` for every tensor-parallel rank over the workers of ``group``: the
        body of most meetings.

        The data-parallel group of a tensor-parallel rank is the devices that hold
        the same shard in every replica; each runs its own collective, placed where
        those devices sit. ``payloads[m][i]`` is member ``m``'s array for the
        ``i``-th collective, which runs on the devices ``group[m].devices[ranks[i]]``
        (``ranks`` defaults to one collective per rank); a rooted one is rooted at
        member ``root``. ``together`` joins payloads into one collective: each entry
        lists the ``i`` of one collective, which then runs over every member's
        arrays at those ``i``, member by member (a context-parallel worker's ranks
        of one tensor-parallel rank hold replicas of the same shard). Returns the
        results in the same layout and the time the last collective ends (now,
        when ``timed`` is false: the numbers are needed but the time is paid
        elsewhere). ``stable``: whenever the caller passes these arguments, each member's
        payload is the very list it was before, never changed (a ZeRO-3 block's
        gather, a shape-only gradient bucket), so the collectives are worked out once
        and only timed again, and return the same result arrays each time (for a
        caller that does not keep them).
        """
        count = len(payloads[0])
        results: list[list[Any]] = [[None] * count for _ in group]
        end = self.env.now
        for positions, devices, outs, plan in self._collectives(
            op, algorithm, group, payloads, ranks, root, together, stable
        ):
            if timed:
                end = max(end, self.engine.collective(plan, devices, kind, label))
            flat = iter(outs)
            for m in range(len(group)):
                for i in positions:
                    results[m][i] = next(flat)
        return results, end

    def _collectives(
        self,
        op: str,
        algorithm: str,
        group: Sequence[Worker],
        payloads: list[list[Any]],
        ranks: Sequence[int] | None,
        root: int,
        together: Sequence[Sequence[int]] | None,
        stable: bool,
    ) -> list[Collective]:
        """:meth:`per_rank`'s collectives: which payloads each joins, its devices, its
        results and its plan; once per members' payload lists when they are ``stable``."""
        key: tuple = ()
        if stable:
            key = (tuple(map(id, payloads)), op, algorithm, root,
                   tuple(m.index for m in group), None if ranks is None else tuple(ranks),
                   None if together is None else tuple(map(tuple, together)))  # fmt: skip
            hit = self._stable.get(key)
            # (the lists are kept, so their ids are their own)
            if hit is not None and all(a is b for a, b in zip(hit[0], payloads, strict=True)):
                return hit[1]
        count = len(payloads[0])
        where = ranks or range(count)
        out = []
        for positions in together or [[i] for i in range(count)]:
            devices = tuple(m.devices[where[i]] for m in group for i in positions)
            outs, plan = comm.collective(
                op,
                [p[i] for p in payloads for i in positions],
                algorithm,
                root=root,
                layout=self.layouts(devices),
            )
            out.append((positions, devices, outs, plan))
        if stable:
            self._stable[key] = (payloads, out)
        return out
