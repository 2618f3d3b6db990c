"""The engine: a SimPy environment with devices, links, a trace and ledgers.

The engine knows nothing about models or strategies. It offers three things
that take simulated time, and records each of them in the trace:

* :meth:`Engine.compute` -- a compute block on the compute stream of one or
  more devices (a tensor-parallel group works in lockstep);
* :meth:`Engine.send` -- point-to-point messages over the network;
* :meth:`Engine.collective` -- a collective's transfer plan over the network,
  either message by message (``"steps"``) or as one block whose length is the
  plan's time on idle links (``"fused"``, for large shape-only runs).

Plus a memory ledger per device (:mod:`simulator.engine.memory`).
"""

from __future__ import annotations

from collections import defaultdict

import simpy

from ..comm.plan import Plan
from ..hardware import ClusterSpec
from ..tape import ComputeSegment
from ..trace import COMM, COMPUTE, Event, Trace
from .cost import CostModel
from .memory import MemoryLedger
from .network import Network

DETAILS = ("steps", "fused")


class Engine:
    """Devices, links and the clock of one simulation."""

    def __init__(self, cluster: ClusterSpec, collective_detail: str = "steps") -> None:
        if collective_detail not in DETAILS:
            raise ValueError(f"collective_detail must be one of {DETAILS}")
        self.cluster = cluster
        self.env = simpy.Environment()
        self.network = Network(cluster)
        self.cost = CostModel(cluster.device)
        self.trace = Trace(cluster.num_devices)
        self.collective_detail = collective_detail
        self.memory = [
            MemoryLedger(d, cluster.device.memory_bytes, lambda: self.env.now)
            for d in range(cluster.num_devices)
        ]
        self.trace.memory = {d: led.samples for d, led in enumerate(self.memory)}
        self.bytes_sent = [0] * cluster.num_devices
        self.comm_bytes: dict[str, int] = defaultdict(int)
        self._fused: dict[tuple[Plan, tuple[int, ...]], tuple[float, set, list[int]]] = {}

    @property
    def now(self) -> float:
        return self.env.now

    # -- compute ---------------------------------------------------------------
    def compute(
        self, devices: tuple[int, ...], seconds: float, name: str, cat: str, **args
    ) -> simpy.Timeout:
        """Occupy the compute stream of ``devices`` for ``seconds`` from now."""
        start = self.env.now
        # one shared args dict and direct appends: large runs record ~10^6 events
        self.trace.events.extend(
            Event(d, COMPUTE, start, start + seconds, name, cat, args) for d in devices
        )
        return self.env.timeout(seconds)

    def segment_time(self, segment: ComputeSegment) -> float:
        return self.cost.segment_time(segment)

    # -- communication ----------------------------------------------------------
    def _record_message(
        self,
        src: int,
        dst: int,
        nbytes: int,
        start: float,
        end: float,
        name: str,
        kind: str,
        link: str,
        **args,
    ) -> None:
        self.bytes_sent[src] += nbytes
        self.comm_bytes[kind] += nbytes
        self.trace.add(
            src,
            COMM,
            start,
            end,
            name,
            kind,
            bytes=nbytes,
            peer=dst,
            direction="send",
            link=link,
            **args,
        )
        self.trace.add(
            dst,
            COMM,
            start,
            end,
            name,
            kind,
            bytes=nbytes,
            peer=src,
            direction="recv",
            link=link,
            **args,
        )

    def send(
        self,
        src: int,
        dst: int,
        nbytes: int,
        kind: str,
        name: str,
        seconds: float | None = None,
        **args,
    ) -> float:
        """Send one message now; returns its arrival time.

        ``seconds`` overrides the alpha-beta time (abstract models give the
        transfer time directly). A message to oneself is free and instant.
        """
        if src == dst:
            return self.env.now
        route = self.network.route(src, dst)
        duration = route.seconds(nbytes) if seconds is None else seconds
        start, end = self.network.reserve(route, self.env.now, duration)
        self._record_message(src, dst, nbytes, start, end, name, kind, route.kind, **args)
        return end

    def collective(self, plan: Plan, devices: tuple[int, ...], kind: str, name: str) -> float:
        """Run ``plan`` over ``devices`` starting now; returns its end time."""
        now = self.env.now
        if not plan.transfers:
            return now
        if self.collective_detail == "steps":
            times = self.network.time_plan(plan, devices, now)
            for t, (start, end) in zip(plan.transfers, times, strict=True):
                src, dst = devices[t.src], devices[t.dst]
                link = self.network.route(src, dst).kind
                self._record_message(
                    src,
                    dst,
                    t.nbytes,
                    start,
                    end,
                    name,
                    kind,
                    link,
                    step=t.step,
                    op=plan.op,
                    algorithm=plan.algorithm,
                )
            return max(end for _, end in times)
        key = (plan, devices)
        if key not in self._fused:
            self._fused[key] = (
                self.network.idle_duration(plan, devices),
                self.network.ports_of(plan, devices),
                [plan.bytes_sent(r) for r in range(len(devices))],
            )
        duration, ports, sent_by_rank = self._fused[key]
        start, end = self.network.reserve_block(ports, now, duration)
        events = self.trace.events
        for d, sent in zip(devices, sent_by_rank, strict=True):
            self.bytes_sent[d] += sent
            self.comm_bytes[kind] += sent
            events.append(
                Event(
                    d,
                    COMM,
                    start,
                    end,
                    name,
                    kind,
                    {
                        "bytes": sent,
                        "op": plan.op,
                        "algorithm": plan.algorithm,
                        "direction": "collective",
                    },
                )
            )
        return end
