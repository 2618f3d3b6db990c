"""Dispatch and combine: the all-to-alls between the ranks of an expert-parallel group.

Expert parallelism puts different experts on different data-parallel ranks,
so a MoE layer must send every token to the ranks of the experts it chose
and bring the experts' outputs back: an all-to-all with uneven blocks each
way (Lepikhin et al. 2020, "GShard", sec. 2.2; Megatron-Core's
``MoEAlltoAllTokenDispatcher``). Those ranks are separate workers, so unlike
a tensor-parallel collective (:mod:`simulator.parallel.tensor.collectives`),
which a worker runs over its own devices, an exchange needs the *other*
workers' rows: the layer code records an :class:`Exchange` on its tape and
asks for the result through a :class:`Ticket`.

* In a **shape-only** run every rank routes by the same rule
  (:mod:`simulator.nn.routing`), so each can work out what it will receive;
  the ticket holds that at once and the runtime only times the exchange, when
  every member of the group has reached it.
* In a **numerics** run the rows are real: the runtime lets the layer code
  wait at :func:`receive` until the group has met and the all-to-all, on the
  real arrays, has run (:mod:`simulator.runtime.experts`).

Before the tokens travel, each rank tells the others how many rows it sends
each of their experts (Megatron-Core's ``preprocess`` exchanges these
counts): the receivers need them to sort the rows by expert. The simulator
hands the counts over with the rows and does not time them: ``E`` integers
per rank against ``N k h`` numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from ...ops.arrays import Array
from ...ops.tape import Wait, new_handle, record

#: What a rank receives: its rows per tensor-parallel rank, and per source rank the
#: rows it sent for each expert (``counts[source][expert]``, all ``E`` experts).
Received = tuple[list[Array], list[list[int]]]


@dataclass(eq=False)
class Ticket:
    """The result of an exchange, once there is one."""

    result: Received | None = None


@dataclass(eq=False)
class Exchange:
    """An all-to-all over the expert-parallel group, recorded on a tape.

    Attributes:
        label: what it moves (``dispatch``, ``combine``, and their gradients).
        payloads: this rank's rows, one array per tensor-parallel rank (the same
            rows on every one, each rank sending its own copy to its counterparts).
        splits: rows for each rank of the expert-parallel group, in order.
        counts: rows per expert, all ``E`` experts (what the receivers sort by).
        handle: >= 0 when the code carries on until :func:`receive` (overlap).
        ticket: where the result goes.
    """

    label: str
    payloads: list[Array]
    splits: list[int]
    counts: list[int]
    handle: int = -1
    ticket: Ticket = field(default_factory=Ticket)


#: How a numerics run waits for an exchange's result (set by the runtime).
_waiter: ContextVar[Callable[[Ticket], None] | None] = ContextVar("exchange_waiter", default=None)


@contextmanager
def waiting_with(waiter: Callable[[Ticket], None]) -> Iterator[None]:
    """Inside the block, :func:`receive` calls ``waiter(ticket)`` for a result that is
    not there yet; the waiter returns when it is."""
    token = _waiter.set(waiter)
    try:
        yield
    finally:
        _waiter.reset(token)


def send(
    label: str,
    payloads: list[Array],
    splits: list[int],
    counts: list[int],
    expected: Received | None,
    overlap: bool = False,
) -> Exchange:
    """Record an exchange; ``expected`` is what it delivers when every rank can work it
    out alone (shape-only). With ``overlap`` the code may compute before it needs the
    result (:func:`receive` then marks where)."""
    item = Exchange(label, payloads, splits, counts, new_handle() if overlap else -1)
    item.ticket.result = expected
    record(item)
    return item


def receive(item: Exchange) -> Received:
    """The exchange's result: what every other rank sent this one."""
    if item.handle >= 0:
        record(Wait(item.handle))
    ticket = item.ticket
    if ticket.result is None:
        waiter = _waiter.get()
        if waiter is None:
            raise RuntimeError(
                f"the {item.label} exchange of expert parallelism needs the other ranks' rows: "
                "run it through the runtime (run_strategy), which lets the group meet"
            )
        waiter(ticket)
    assert ticket.result is not None
    return ticket.result
