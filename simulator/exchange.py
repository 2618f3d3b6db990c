"""How workers meet: point-to-point messages and collectives between workers.

A send reserves the links and delivers the real arrays when they arrive; a
receive waits for them. A collective between workers is a rendezvous: when
the last member arrives, the collective runs (its numbers and its time on the
links) and every member resumes when it ends. Waiting while a message or a
collective a worker needs is under way counts as exposed communication;
waiting for a peer that is still computing does not.

:class:`Exchange` is a part of :class:`~simulator.runtime.Runtime`, kept in
its own module; it uses the runtime's ``env``, ``engine``, ``plan``, ``step``
and bookkeeping dictionaries.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from . import comm
from .arrays import nbytes, split
from .intervals import union
from .parallel.program import Recv, Send
from .parallel.worker import Worker

Process = Generator[simpy.Event, Any, Any]
#: A collective's body: every member's payload in, (every member's result, end time) out.
Body = Callable[[list[Any]], tuple[list[Any], float]]


class Exchange:
    """Messages and rendezvous between workers (see the module docstring)."""

    env: simpy.Environment
    step: int
    _slots: dict[tuple, simpy.Event]
    _buffers: dict[int, dict[tuple, Any]]
    _meetings: dict[tuple, dict[str, Any]]
    _waiting: dict[int, str]
    exposed: dict[int, float]

    # -- point to point --------------------------------------------------------------------
    def _slot(self, key: tuple) -> simpy.Event:
        if key not in self._slots:
            self._slots[key] = self.env.event()
        return self._slots[key]

    def _send(self, w: Worker, ins: Send) -> None:
        """Send a chunk's activation or gradient to the worker of the next (previous) stage.

        Every tensor-parallel rank sends its copy to the same rank of the peer.
        With ``pp_scatter_gather`` (Narayanan et al. 2021, sec. 4.1) rank ``r``
        sends only the ``r``-th ``1/t`` of the (replicated) tensor and the
        receivers all-gather it over their fast intra-node links.
        """
        payload = self._buffers[w.index].pop((ins.what, ins.chunk, ins.mb))
        peer = self.plan.workers[ins.peer]
        seconds = None
        if hasattr(self.plan.model_config, "transfer_seconds"):
            seconds = self.plan.model_config.transfer_seconds(ins.chunk, ins.what)
        scatter = self.plan.strategy.pp_scatter_gather and len(w.devices) > 1
        pieces = [
            split(x.reshape(-1), len(w.devices))[r] if scatter else x for r, x in enumerate(payload)
        ]
        start = self.env.now
        name = f"{ins.what[:3]} {ins.chunk}/{ins.mb}"
        arrival = max(
            self.engine.send(
                src, dst, nbytes(x), "pp", name, seconds=seconds, mb=ins.mb, chunk=ins.chunk
            )
            for src, dst, x in zip(w.devices, peer.devices, pieces, strict=True)
        )
        slot = self._slot((self.step, ins.what, ins.chunk, ins.mb, peer.index))
        self.env.process(
            self._deliver(peer, slot, payload, pieces if scatter else None, arrival, start)
        )

    def _deliver(
        self,
        peer: Worker,
        slot: simpy.Event,
        payload: list,
        pieces: list | None,
        arrival: float,
        start: float,
    ) -> Process:
        """Hand a message to the receiver when it arrives (after the all-gather of the
        scattered pieces, which rebuilds the tensor from the pieces themselves)."""
        yield self.env.timeout(arrival - self.env.now)
        if pieces is not None:
            gathered, plan = comm.all_gather(pieces)
            end = self.engine.collective(plan, peer.devices, "tp", "pp all-gather")
            yield self.env.timeout(end - self.env.now)
            payload = [g.reshape(x.shape) for g, x in zip(gathered, payload, strict=True)]
        slot.succeed((payload, start))

    def _recv(self, w: Worker, ins: Recv) -> Process:
        slot = self._slot((self.step, ins.what, ins.chunk, ins.mb, w.index))
        self._waiting[w.index] = (
            f"the {ins.what} of stage {ins.chunk}, micro-batch {ins.mb} from worker {ins.peer}"
        )
        begin = self.env.now
        payload, sent = yield slot
        del self._waiting[w.index]
        # only the part of the wait during which the message was on the wire is exposed
        self.expose(w, max(0.0, self.env.now - max(begin, sent)))
        self._buffers[w.index][(ins.what, ins.chunk, ins.mb)] = payload

    # -- collectives between workers -----------------------------------------------------------
    def launch(
        self,
        w: Worker,
        key: tuple,
        members: list[Worker],
        payload: Any,
        run: Body,
    ) -> simpy.Event:
        """Start the collective ``key`` of ``members`` without waiting for it (e.g. a
        DDP gradient bucket); :meth:`wait` collects the results.

        When the last member arrives, ``run`` gets every member's payload (in
        member order), performs the collective -- numerics and engine time --
        and returns the per-member results and the time the collective ends.
        The returned event fires then, with ``(results by worker, start, end)``.
        """
        full_key = (self.step, *key)
        meeting = self._meetings.setdefault(full_key, {"payloads": {}, "event": self.env.event()})
        meeting["payloads"][w.index] = payload
        if len(meeting["payloads"]) == len(members):
            del self._meetings[full_key]
            results, end = run([meeting["payloads"][m.index] for m in members])
            start = self.env.now
            by_worker = {m.index: r for m, r in zip(members, results, strict=True)}
            self.env.timeout(end - start).callbacks.append(
                lambda _: meeting["event"].succeed((by_worker, start, end))
            )
        return meeting["event"]

    def wait(self, w: Worker, handles: list[simpy.Event], what: str) -> Process:
        """Wait for launched collectives; returns ``w``'s results in order.

        The wait counts as exposed communication while any of the collectives is
        under way (the rest of the wait is for peers still computing).
        """
        begin = self.env.now
        self._waiting[w.index] = what
        results, windows = [], []
        for handle in handles:
            by_worker, start, end = yield handle
            results.append(by_worker[w.index])
            windows.append((start, end))
        self._waiting.pop(w.index, None)
        self.expose(
            w,
            sum(
                max(0.0, min(end, self.env.now) - max(start, begin))
                for start, end in union(windows)
            ),
        )
        return results

    def expose(self, w: Worker, seconds: float) -> None:
        """Charge ``seconds`` of waiting on communication to every device of ``w``."""
        for d in w.devices:
            self.exposed[d] += seconds

    def meet(
        self,
        w: Worker,
        key: tuple,
        members: list[Worker],
        payload: Any,
        run: Body,
        what: str,
    ) -> Process:
        """A blocking collective: :meth:`launch` then :meth:`wait`."""
        (result,) = yield from self.wait(w, [self.launch(w, key, members, payload, run)], what)
        return result
