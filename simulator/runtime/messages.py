"""Pipeline messages: an activation or a gradient, from one stage's worker to the next.

A message is sent the moment the compute that produced it ends: it books
the links (:meth:`simulator.engine.Engine.send_group`) and lands in the
receiver's *slot* -- one per message, numbered by
:func:`~simulator.parallel.program.message_id` -- with the real arrays and
its arrival time. A receive takes it from there. Every message costs at most
one simulation event:

* the receiver comes after the message arrived: it takes it, no event;
* it comes while the message is on the wire: one timeout until the arrival;
* it comes while the sender still computes the message: the sender has
  published its compute's timeout in the slot, and the receiver waits on that
  same event -- the sender's own, no new one -- then on the wire if need be;
* it comes earlier still: it leaves an event in the slot, which the sender
  fires at the arrival time.

Waiting for a neighbour's message, its time on the wire included, is
*bubble* (DESIGN.md, "Definitions"). With ``pp_scatter_gather`` (Narayanan
et al. 2021, sec. 4.1) tensor-parallel rank ``r`` sends only the ``r``-th
``1/t`` of a replicated activation and the receivers all-gather it over their
fast intra-node links: that all-gather is their own group's collective, so
waiting for it is exposed communication. An activation that is *sharded*
across the ranks (the cut falls after a column-parallel layer) is different
on every rank and travels whole: there is nothing to scatter.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple

import simpy

from .. import comm
from ..arrays import nbytes, split
from ..parallel.program import WHAT
from .workers import SimWorker

if TYPE_CHECKING:
    from .core import Runtime

Process = Generator[simpy.Event, Any, Any]


class Delivered(NamedTuple):
    """A message in its slot: per member, per rank arrays, and the pieces that travelled
    when they were scattered (None otherwise)."""

    arrival: float
    payloads: list[Any]
    pieces: list[Any] | None


class Mailbox:
    """The message slots of one step (see the module docstring)."""

    def __init__(self, runtime: Runtime, size: int) -> None:
        self.rt = runtime
        self.env = runtime.env
        self.slots: list[Any] = [None] * size

    def reset(self) -> None:
        self.slots = [None] * len(self.slots)

    def publish(self, message: int, compute: simpy.Event) -> None:
        """The compute whose end sends ``message`` has started; receivers may wait on it."""
        waiting = self.slots[message]
        self.slots[message] = compute
        if waiting is not None:  # a receiver came early: let it wait on the compute
            waiting.succeed()

    # -- sending ---------------------------------------------------------------------
    def send(self, sw: SimWorker, ins: tuple) -> None:
        _, what, stage, mb, peer, message = ins
        rt = self.rt
        message += sw.message_base
        payloads = sw.buffers.pop(message)
        receiver = rt.peer(sw, peer)
        t = len(sw.devices)
        lead = sw.lead.chunks[stage]
        scatter = rt.plan.strategy.pp_scatter_gather and t > 1 and not lead.output_sharded
        pieces = None
        if scatter:
            pieces = [
                [split(x.reshape(-1), t)[r] for r, x in enumerate(per_rank)]
                for per_rank in payloads
            ]
        sizes = tuple(nbytes(x) for x in (pieces or payloads)[0])
        seconds = rt.transfer_seconds(stage, WHAT[what])
        arrival = rt.engine.send_group(
            sw.devices,
            receiver.devices,
            sizes[0] if len(set(sizes)) == 1 else sizes,
            "pp",
            f"{WHAT[what][:3]} {stage}/{mb}",
            seconds,
            shown=(sw.shown, receiver.shown),
            mb=mb,
            chunk=stage,
        )
        waiting = self.slots[message]
        self.slots[message] = Delivered(arrival, payloads, pieces)
        if waiting is not None and not waiting.triggered:
            rt.fire_at(waiting, arrival)

    # -- receiving -------------------------------------------------------------------
    def recv(self, sw: SimWorker, ins: tuple) -> Process | None:
        """Take the message if it is there; otherwise a process that waits for it."""
        message = ins[5] + sw.message_base
        entry = self.slots[message]
        if entry.__class__ is Delivered and entry.arrival <= self.env.now and entry.pieces is None:
            self.slots[message] = None
            sw.buffers[message] = entry.payloads
            return None
        return self._receive(sw, ins, message)

    def _receive(self, sw: SimWorker, ins: tuple, message: int) -> Process:
        _, what, stage, mb, peer, _ = ins
        sw.waiting_for = (
            f"the {WHAT[what]} of stage {stage}, micro-batch {mb} from worker "
            f"{self.rt.peer(sw, peer).lead.index}"
        )
        entry = self.slots[message]
        if entry is None:
            entry = self.slots[message] = self.env.event()
            yield entry
            entry = self.slots[message]
        if isinstance(entry, simpy.Event):  # the sender's compute: the send follows its end
            yield entry
            entry = self.slots[message]
        if entry.arrival > self.env.now:
            yield self.env.timeout(entry.arrival - self.env.now)
        sw.waiting_for = ""
        self.slots[message] = None
        payloads = entry.payloads
        if entry.pieces is not None:
            payloads = yield from self._gather(sw, entry)
        sw.buffers[message] = payloads

    def _gather(self, sw: SimWorker, entry: Delivered) -> Process:
        """All-gather the scattered pieces over the receivers' tensor-parallel group."""
        rt = self.rt
        gathered, plan = [], None
        for pieces, whole in zip(entry.pieces, entry.payloads, strict=True):
            outs, plan = comm.all_gather(pieces)
            gathered.append([g.reshape(x.shape) for g, x in zip(outs, whole, strict=True)])
        assert plan is not None
        end = rt.engine.collective(plan, sw.devices, "tp", "pp all-gather", shown=sw.shown)
        yield from rt.wait_for_collective(sw, end, "the all-gather of a scattered message")
        return gathered
