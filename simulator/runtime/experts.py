"""Expert parallelism at run time: the dispatch and combine all-to-alls between workers.

A MoE layer records every all-to-all it needs as an
:class:`~simulator.parallel.expert.Exchange` on its tape
(:mod:`simulator.parallel.expert.exchange`). The expert-parallel group's ranks
are separate workers, so replaying that item is a *meeting*
(:mod:`simulator.runtime.meetings`): each member hands in its rows, and when
the last one has arrived the all-to-all runs -- its numbers (on the real
arrays) and its time on the links, one collective per tensor-parallel rank over
the devices that hold that rank in every member, of kind ``ep``. A member
that arrives early is idle until the last one does (the slowest expert rank
sets the pace: load imbalance, counted as bubble), then waits while the
all-to-all runs (exposed communication), as docs/design.md defines the two.

**Numerics.** The layer code cannot go on before it has what the other
ranks sent, and those ranks are other simulated processes. So the code of
an action that exchanges runs in a thread of its own (:class:`Bridge`),
which stops where it waits for an exchange; the simulated worker then
replays what the code recorded so far -- compute, collectives, the exchange
itself, which meets the group -- and hands the result over, and the code goes
on. The thread and the simulation take turns, never running at once, so the
run stays deterministic. In shape-only runs every rank knows what it will
receive (:mod:`simulator.nn.routing`'s rules), the code runs straight through,
and only the time of the exchanges needs the meeting.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from .. import comm
from ..comm.layout import Layouts
from ..engine import Engine, Process
from ..ops.tape import Tape, active
from ..parallel.build import Plan
from ..parallel.expert import Exchange, Ticket, waiting_with
from .meetings import Handle, Meetings
from .workers import SimWorker

#: The collective kind of the experts' all-to-alls (the ``comm_bytes`` key).
KIND = "ep"


class ExpertExchanges:
    """The meetings of a run's expert-parallel groups (module docstring)."""

    def __init__(self, plan: Plan, engine: Engine, meetings: Meetings, layouts: Layouts) -> None:
        self.plan = plan
        self.engine = engine
        self.meetings = meetings
        self.layouts = layouts

    def launch(self, sw: SimWorker, item: Exchange, key: tuple) -> Handle:
        """Hand ``sw``'s rows of ``item`` in; ``key`` tells this exchange apart from the
        step's others (the action and the exchange's place in it)."""
        group = self.plan.ep_group(sw.lead)
        members = tuple(w.index for w in group)

        def body(items: list[Exchange]) -> tuple[list[Any], float]:
            return self._run(group, items)

        return self.meetings.launch(("ep", members, *key), group, {sw.lead.index: item}, body)

    def wait(self, sw: SimWorker, handle: Handle, item: Exchange) -> Process:
        """Wait for the exchange and give the code its result."""
        yield from self.meetings.wait(sw, [handle], f"the {item.label} all-to-all of its experts")
        if item.ticket.result is None:
            item.ticket.result = handle.results[sw.lead.index]

    def _run(self, group: list[Any], items: list[Exchange]) -> tuple[list[Any], float]:
        """The all-to-all of every tensor-parallel rank over the group's members."""
        end = self.engine.env.now
        splits = [item.splits for item in items]
        counts = [item.counts for item in items]
        received: list[list[Any]] = [[] for _ in items]
        for r in range(len(items[0].payloads)):
            devices = tuple(w.devices[r] for w in group)
            outs, plan = comm.collective(
                "all_to_all",
                [item.payloads[r] for item in items],
                layout=self.layouts(devices),
                splits=splits,
            )
            end = max(end, self.engine.collective(plan, devices, KIND, items[0].label))
            for m, out in enumerate(outs):
                received[m].append(out)
        return [(rows, counts) for rows in received], end


def exchanging_stages(plan: Plan) -> frozenset[int]:
    """The stages whose actions exchange tokens with other workers: those holding a
    MoE layer, under expert parallelism."""
    if plan.strategy.ep == 1:
        return frozenset()
    w = plan.workers[0]
    return frozenset(
        c
        for r in range(plan.strategy.pp)
        for c, chunk in plan.worker(w.dp_rank, r).chunks.items()
        if any(block.expert_params(0) for block in chunk.blocks)
    )


def expert_rank(plan: Plan, sw: SimWorker) -> int:
    """The expert-parallel rank whose experts ``sw`` holds, when that changes what its
    actions do (a shape-only routing rule that is not uniform); else 0."""
    model = plan.model_config
    if plan.strategy.ep == 1 or getattr(model, "routing", "uniform") == "uniform":
        return 0
    return plan.mesh.expert_coords(sw.lead.dp_rank)[0]


class _Cancelled(BaseException):
    """Unwinds a bridged thread whose run was abandoned."""


class Bridge:
    """Layer code in a thread that stops where it waits for an exchange (module docstring).

    :meth:`advance` lets it run until it stops or ends and returns the tape items it
    recorded meanwhile; :attr:`done` says it ended, :attr:`result` is what ``work``
    returned. The thread runs in a copy of the caller's context (the micro-batch,
    the placement, the precision).
    """

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.done = False
        self.tape: Tape | None = None
        self._error: BaseException | None = None
        self._seen = 0
        self._go = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._cancelled = False
        self._context = contextvars.copy_context()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._started = False

    def _main(self) -> None:
        try:
            self._context.run(self._run)
        except _Cancelled:
            pass
        except BaseException as err:  # handed to the simulation, which raises it
            self._error = err
        self.done = True
        self._back.release()

    def _run(self) -> None:
        with waiting_with(self._wait):
            self.result = self.work()

    def _wait(self, ticket: Ticket) -> None:
        """In the thread: stop until the simulation has filled ``ticket``."""
        self.tape = active()
        self._back.release()
        self._go.acquire()
        if self._cancelled:
            raise _Cancelled
        if ticket.result is None:
            raise RuntimeError("an exchange was resumed before its result arrived")

    def advance(self) -> list[Any]:
        """Let the code run until it stops or ends; the tape items it recorded since
        the last call (after it ended: none, :attr:`result` holds everything)."""
        if not self._started:
            self._started = True
            self._thread.start()
        else:
            self._go.release()
        self._back.acquire()
        if self._error is not None:
            raise self._error
        if self.done or self.tape is None:
            return []
        items = self.tape.items[self._seen :]
        self._seen = len(self.tape.items)
        return items

    def rest(self) -> list[Any]:
        """After the code ended: the items it recorded after it last stopped (None when
        it never stopped: then the whole tape is the code's own)."""
        if self.tape is None:
            return []
        return self.tape.items[self._seen :]

    def cancel(self) -> None:
        """Unwind a thread that is stopped (an abandoned run)."""
        if self._started and not self.done:
            self._cancelled = True
            self._go.release()
            self._thread.join()
