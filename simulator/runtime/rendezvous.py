"""Blocking pipeline messages: a send ends when its receiver has taken the message.

DeepSpeed's pipeline engine moves activations and gradients with blocking
point-to-point calls (``deepspeed/runtime/pipe/p2p.py``: ``dist.send`` and
``dist.recv``): on the GPU a send cannot finish before the neighbour has
posted the matching receive and the tensor has crossed, and the compute
queued after it waits (Rasley et al. 2020; :mod:`simulator.parallel.pipeline.deepspeed`).
A schedule whose :attr:`~simulator.parallel.pipeline.actions.Schedule.blocking`
is set runs its ``SEND`` and ``RECV`` instructions here instead of
:class:`~.messages.Mailbox`'s asynchronous ones; both use the mailbox's slots
and links:

* the sender comes first: it leaves its message *parked* in the slot and
  waits; the receiver, when it comes, puts the message on the links and both
  resume when it arrives;
* the receiver comes first: it leaves an event in the slot (as it does for an
  asynchronous message); the sender puts the message on the links at once and
  both resume when it arrives.

Either way the transfer starts when the later of the two comes, and the
sender sits through it: what it waits is *bubble*, as the receiver's wait for
a neighbour's message is (docs/design.md, "Definitions"). A send that no
receive will ever match leaves its worker waiting, and the run ends in the
runtime's deadlock report naming the receiver it waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import simpy

from ..engine import Process, fire_at
from .messages import Mailbox
from .workers import SimWorker


@dataclass(eq=False)
class Parked:
    """A message whose sender waits for its receiver: ``event`` fires when it arrives."""

    event: simpy.Event
    sender: SimWorker
    ins: tuple
    payloads: list[Any]


class Rendezvous:
    """``SEND`` and ``RECV`` handlers for blocking messages over ``mailbox``."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.env = mailbox.env

    def send(self, sw: SimWorker, ins: tuple) -> Process | None:
        mailbox = self.mailbox
        message = ins[5] + sw.message_base
        payloads = sw.buffers.pop(message)
        waiting = mailbox.slots[message]
        if waiting is not None:  # the receiver is there: the message leaves now
            arrival = mailbox.deliver(sw, ins, payloads, waiting)
            if arrival <= self.env.now:
                return None
            return self._hold(sw, ins, self.env.timeout(arrival - self.env.now))
        parked = Parked(self.env.event(), sw, ins, payloads)
        mailbox.slots[message] = parked
        return self._hold(sw, ins, parked.event)

    def recv(self, sw: SimWorker, ins: tuple) -> Process | None:
        mailbox = self.mailbox
        entry = mailbox.slots[ins[5] + sw.message_base]
        if entry.__class__ is Parked:  # the sender waits: the message leaves now
            arrival = mailbox.deliver(entry.sender, entry.ins, entry.payloads, None)
            fire_at(self.env, entry.event, arrival)
        return mailbox.recv(sw, ins)

    def _hold(self, sw: SimWorker, ins: tuple, until: simpy.Event) -> Process:
        sw.waiting_for = ins  # put in words only if the run deadlocks
        yield until
        sw.waiting_for = ""
