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
  fires when the message can be taken (when it publishes its compute: at the
  compute's end; otherwise at the arrival).

Waiting for a neighbour's message, its time on the wire included, is
*bubble* (docs/design.md, "Definitions"). With ``pp_scatter_gather`` (Narayanan
et al. 2021, sec. 4.1) tensor-parallel rank ``r`` sends only the ``r``-th
``1/t`` of a replicated activation and the receivers all-gather it over their
fast intra-node links: that all-gather is their own group's collective, so
waiting for it is exposed communication. An activation that is *sharded*
across the ranks (the cut falls after a column-parallel layer) is different
on every rank and travels whole: there is nothing to scatter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import simpy
from simpy.events import PENDING

from .. import comm
from ..engine import Engine, Process, fire_at
from ..engine.channel import Channel
from ..engine.events import pending
from ..ops.arrays import nbytes, split
from ..parallel.program import ACTIVATION, SEND, WHAT
from .replay import Replay
from .workers import SimWorker


def scatter(payloads: list[list[Any]]) -> list[list[Any]]:
    """Rank ``r``'s ``r``-th ``1/t`` of its (replicated) array, for every member."""
    out = []
    for per_rank in payloads:
        t = len(per_rank)
        out.append([split(x.reshape(-1), t)[r] for r, x in enumerate(per_rank)])
    return out


#: trace names of messages (``{mb}`` is filled in from the row)
_NAMES = ("act {stage}/{{mb}}", "grad {stage}/{{mb}}")


_GATHER = "pp all-gather"


class Mailbox:
    """The message slots of one step (see the module docstring).

    ``size`` slots carry the messages between ``workers`` (which stand for every
    replica when ``folded``) over ``engine``'s links; ``replay`` times the
    all-gathers of ``scatter_gather``. ``transfer_seconds(stage, what)`` is a
    message's time when the model states it (abstract models), else None.
    """

    def __init__(
        self,
        engine: Engine,
        replay: Replay,
        workers: Sequence[SimWorker],
        size: int,
        *,
        folded: bool,
        scatter_gather: bool,
        transfer_seconds: Callable[[int, str], float | None],
        numerics: bool,
    ) -> None:
        self.engine = engine
        self.env = engine.env
        self.replay = replay
        self.folded = folded
        self.scatter_gather = scatter_gather
        self.transfer_seconds = transfer_seconds
        self.numerics = numerics
        #: (replica, pipeline rank) -> its simulated worker
        self._peers = {(0 if folded else sw.lead.dp_rank, sw.pp_rank): sw for sw in workers}
        self.slots: list[Any] = [None] * size
        #: (sender, what, stage) -> its channel: the same message every micro-batch
        self._channels: dict[tuple[int, int, int], Channel] = {}
        #: shape-only: the all-gather of a channel's scattered pieces on a worker, by the
        #: pieces and the worker
        self._gathers: dict[tuple[int, int], tuple[list[Any], Any, Any]] = {}

    def reset(self) -> None:
        self.slots = [None] * len(self.slots)

    def peer(self, sw: SimWorker, pp_rank: int) -> SimWorker:
        """The simulated worker of pipeline rank ``pp_rank`` in ``sw``'s replica."""
        return self._peers[(0 if self.folded else sw.lead.dp_rank, pp_rank)]

    def publish(self, message: int, compute: simpy.Event, end: float) -> None:
        """The compute whose end (at ``end``) sends ``message`` has started; receivers
        may wait on it."""
        slots = self.slots
        waiting = slots[message]
        slots[message] = compute
        if waiting is not None:  # a receiver came early: wake it when the message is sent
            fire_at(self.env, waiting, end)

    def all_free(self, stages: int) -> bool:
        """Whether every message of the ``stages`` model stages takes no time (an
        abstract model with ``comm_ms = 0``) and none is scattered (whose all-gather
        takes time): then no message waits for a lane, and a worker may run ahead of
        the engine's clock through its sends and receives (:meth:`send_ahead`,
        :meth:`recv`)."""
        if self.scatter_gather and any(len(sw.devices) > 1 for sw in self._peers.values()):
            return False
        hook = self.transfer_seconds
        return all(hook(stage, what) == 0.0 for stage in range(stages) for what in WHAT)

    # -- sending ---------------------------------------------------------------------
    def send(self, sw: SimWorker, ins: tuple) -> None:
        message = ins[5] + sw.message_base
        slots = self.slots
        payloads = sw.buffers.pop(message)
        channel = self._channels.get((sw.index, ins[1], ins[2]))
        if channel is None or channel.scatter:
            self.deliver(sw, ins, payloads, slots[message])
            return
        # deliver(), written out for a channel known and not scattered: once per message
        waiting = slots[message]
        arrival = channel.send(ins[3])
        slots[message] = (arrival, payloads, None)
        if waiting is not None and waiting._value is PENDING:  # not triggered yet
            fire_at(self.env, waiting, arrival)

    def send_ahead(self, sw: SimWorker, ins: tuple) -> bool | None:
        """:meth:`send` at the worker's own clock, which may be ahead of the engine's
        (:meth:`simulator.runtime.core.Runtime._process`): a free message of a channel
        already open (None); False when it needs the engine's clock -- a message that
        takes time, or the channel's first. (No channel is scattered: :meth:`all_free`.)"""
        channel = self._channels.get((sw.index, ins[1], ins[2]))
        if channel is None or not channel.free:
            return False
        message = ins[5] + sw.message_base
        slots = self.slots
        waiting = slots[message]
        arrival = channel.send_free(ins[3])
        slots[message] = (arrival, sw.buffers.pop(message), None)
        if waiting is not None and waiting._value is PENDING:  # the receiver came early
            fire_at(self.env, waiting, arrival)
        return None

    def deliver(self, sw: SimWorker, ins: tuple, payloads: list[Any], waiting: Any) -> float:
        """Put ``sw``'s message of the send ``ins`` on the links now and in its slot; wake
        ``waiting`` (the receiver's event, if it came early) when it arrives. Returns
        the arrival time."""
        message = ins[5] + sw.message_base
        _, what, stage, _, peer, _ = ins
        channel = self._channels.get((sw.index, what, stage))
        if channel is None:
            channel = self._open(sw, what, stage, peer, payloads)
        pieces = None
        if channel.scatter:
            pieces = scatter(payloads) if self.numerics else channel.pieces
        arrival = channel.send(ins[3])
        # a delivered message: (arrival, per member per rank arrays, scattered pieces)
        self.slots[message] = (arrival, payloads, pieces)
        if waiting is not None and waiting._value is PENDING:  # not triggered yet
            fire_at(self.env, waiting, arrival)
        return arrival

    def _open(
        self, sw: SimWorker, what: int, stage: int, peer: int, payloads: list[Any]
    ) -> Channel:
        """The channel of ``sw``'s messages of ``what`` from ``stage`` (the same size for
        every micro-batch)."""
        receiver = self.peer(sw, peer)
        t = len(sw.devices)
        # the tensor at the cut: the sender's output, or the gradient of its input, whose
        # producer (the stage before) is on the receiver
        cut = sw.lead.chunks[stage] if what == ACTIVATION else receiver.lead.chunks[stage - 1]
        scattered = self.scatter_gather and t > 1 and not cut.output_sharded
        pieces = scatter(payloads) if scattered else None
        sizes = tuple(nbytes(x) for x in (pieces[0] if pieces else payloads[0]))
        channel = self.engine.channel(
            sw.devices,
            receiver.devices,
            sizes[0] if len(set(sizes)) == 1 else sizes,
            "pp",
            _NAMES[what].format(stage=stage),
            self.transfer_seconds(stage, WHAT[what]),
            (sw.shown, receiver.shown),
        )
        channel.scatter = scattered
        channel.pieces = pieces  # shape-only: the same pieces every micro-batch
        self._channels[(sw.index, what, stage)] = channel
        return channel

    # -- receiving -------------------------------------------------------------------
    def recv(self, sw: SimWorker, ins: tuple) -> tuple[simpy.Event] | Process | None:
        """Take the message if it is there (None). Otherwise ``(event,)``: wait for the
        event -- the sender's compute, an event the sender fires, or the message's
        arrival -- then receive again (the runtime's protocol for a wait that needs
        no process of its own); or, for scattered pieces, a process that gathers them.

        A worker running ahead (:meth:`simulator.runtime.core.Runtime._process`)
        receives here at its own clock too: a message's ``arrival`` and that clock are
        both worker times, and no message is scattered (:meth:`all_free`).
        """
        message = ins[5] + sw.message_base
        slots = self.slots
        entry = slots[message]
        if entry.__class__ is tuple:
            arrival, payloads, pieces = entry
            now = self.env._now
            if arrival > now:  # on the wire
                sw.waiting_for = ins  # put in words only if the run deadlocks (describe_wait)
                return (self.env.timeout(arrival - now),)
            if sw.waiting_for is ins or pieces is not None:
                sw.waiting_for = ""  # its wait (if any) is over
            slots[message] = None
            if pieces is not None:
                return self._gathered(sw, message, pieces, payloads)
            sw.buffers[message] = payloads
            return None
        sw.waiting_for = ins
        if entry is None or entry.processed:
            # nothing sent yet, or a compute that ended without its send (its device
            # failed): leave an event for the sender to fire
            entry = slots[message] = pending(self.env)
        return (entry,)  # that event, or the sender's compute: the send follows its end

    def _gathered(
        self, sw: SimWorker, message: int, pieces: list[Any], payloads: list[Any]
    ) -> Process:
        sw.buffers[message] = yield from self._gather(sw, pieces, payloads)

    def describe_wait(self, sw: SimWorker, ins: tuple) -> str:
        """What a worker stuck at the receive (or blocking send) ``ins`` waits for, in
        words."""
        op, what, stage, mb, peer, _ = ins
        who = self.peer(sw, peer).lead.index
        if op == SEND:
            return f"worker {who} to receive the {WHAT[what]} of stage {stage}, micro-batch {mb}"
        return f"the {WHAT[what]} of stage {stage}, micro-batch {mb} from worker {who}"

    def _gather(self, sw: SimWorker, scattered: list[Any], payloads: list[Any]) -> Process:
        """All-gather the scattered pieces over the receivers' tensor-parallel group."""
        layout = sw.layout
        engine = self.engine
        if not self.numerics:  # the gathered shapes are the sent ones, every micro-batch
            key = (id(scattered), sw.index)
            hit = self._gathers.get(key)
            if hit is None:
                _, plan = comm.collective("all_gather", scattered[0], layout=layout)
                booking = None
                if engine.collective_detail == "fused" and plan.sends:
                    booking = engine.fused(plan, sw.devices, "tp", _GATHER, sw.shown)
                hit = self._gathers[key] = (scattered, plan, booking)  # keeps the pieces alive
            _, plan, booking = hit
            gathered = payloads
            if booking is not None:
                end = engine.book(booking)
            else:
                end = engine.collective(plan, sw.devices, "tp", _GATHER, shown=sw.shown)
        else:
            gathered = []
            for pieces, whole in zip(scattered, payloads, strict=True):
                outs, plan = comm.collective("all_gather", pieces, layout=layout)
                gathered.append([g.reshape(x.shape) for g, x in zip(outs, whole, strict=True)])
            end = engine.collective(plan, sw.devices, "tp", _GATHER, shown=sw.shown)
        yield from self.replay.wait(sw, end, "the all-gather of a scattered message")
        return gathered
