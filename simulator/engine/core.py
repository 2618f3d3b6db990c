"""The engine: a SimPy environment with devices, links, a trace and ledgers.

The engine knows nothing about models, strategies or collective algorithms. It
offers three things that take simulated time, and records each in the trace:

* :meth:`Engine.compute` -- a compute block on the compute stream of one or
  more devices (a tensor-parallel group works in lockstep);
* :meth:`Engine.send` and :meth:`Engine.send_group` -- point-to-point messages
  over the network;
* :meth:`Engine.collective` -- a collective's transfer plan
  (:class:`~simulator.transfer.TransferPlan`) over the network, either message
  by message (``"steps"``) or as one block whose length is the plan's time on
  idle links (``"fused"``, for large shape-only runs).

Plus a memory ledger per device (:mod:`simulator.engine.memory`), created when
a device is first used: a cluster of a billion devices costs nothing until
its devices work. Each device has its own kind's memory and roofline
(:meth:`Engine.cost_of`), so a cluster may mix kinds of node.

*Groups.* Every method that records takes the devices that do the work in
lockstep. An optional ``shown`` group is what the trace records and what the
traffic counters charge: the timed devices' pattern repeated -- a data-parallel
run whose identical replicas are simulated once shows every replica's devices
(:mod:`simulator.runtime.fold`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator
from functools import partial
from typing import Any, NamedTuple

import simpy

from ..hardware import ClusterSpec
from ..ops.tape import ComputeSegment
from ..transfer import TransferPlan
from .channel import Channel
from .cost import Cost, Costs
from .memory import MemoryLedger, MemoryRecord
from .network import Network
from .streams import LaneSet, lane, stream_of
from .trace import COMM, COMPUTE, NO_PEER, Trace

DETAILS = ("steps", "fused")

#: A SimPy process body: a generator that yields the events it waits for.
Process = Generator[simpy.Event, Any, Any]


class Ledgers(dict[int, MemoryLedger]):
    """Memory ledgers by device, created for a device when it is first asked for."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    def __missing__(self, device: int) -> MemoryLedger:
        return self._engine.ledger((device,))


class FusedCollective(NamedTuple):
    """A collective booked as one block, all but its start worked out
    (:meth:`Engine.fused`): the ports it holds for ``duration``, its trace track,
    and the key its bytes are counted under."""

    devices: tuple[int, ...]
    ports: tuple[int, ...]
    duration: float
    track: int
    count: list  # its tally: [the key its bytes are counted under, times run]
    mirrored: bool
    stream: int
    lanes: LaneSet  # its stream's lanes on its ports, the others'


class Engine:
    """Devices, links and the clock of one simulation."""

    def __init__(
        self, cluster: ClusterSpec, collective_detail: str = "steps", synchronised: int = 1
    ) -> None:
        if collective_detail not in DETAILS:
            raise ValueError(f"collective_detail must be one of {DETAILS}")
        self.cluster = cluster
        self.env = simpy.Environment()
        self.network = Network(cluster)
        #: ``synchronised``: the devices a step waits for (:mod:`.cost`, the slowest device)
        self.costs = Costs(cluster, synchronised)
        #: node 0's devices (every device's, when the nodes are alike)
        self.cost = self.costs.default
        self.trace = Trace()
        self.collective_detail = collective_detail
        self.memory = Ledgers(self)
        self.trace.ledgers = self.memory
        self._bytes_sent: defaultdict[int, int] = defaultdict(int)
        self._comm_bytes: defaultdict[str, int] = defaultdict(int)
        self.channels: list[Channel] = []
        self._fused: dict[tuple[TransferPlan, tuple[int, ...]], tuple[float, tuple[int, ...]]] = {}
        #: (shown, sent, kind, to) -> how many times those bytes were sent, not yet counted
        self._counts: dict[tuple, int] = {}
        #: the tallies of fused collectives, ``[key of _counts, times]`` (one per key,
        #: counted up without hashing the key), and those counted since the last flush
        self._tallies: dict[tuple, list] = {}
        self._pending: list[list] = []
        #: lane -> when the traffic that folded replicas mirror (their own) last ends there
        self.own_free: dict[int, float] = {}

    @property
    def now(self) -> float:
        return self.env.now

    @property
    def bytes_sent(self) -> defaultdict[int, int]:
        """Bytes every device has sent so far."""
        self.count_channels()
        return self._bytes_sent

    @property
    def comm_bytes(self) -> defaultdict[str, int]:
        """Bytes sent so far by all devices, by kind (``pp``, ``dp``, ``tp`` ...)."""
        self.count_channels()
        return self._comm_bytes

    def count_channels(self) -> None:
        """Add the bytes sent since the last call to the counters (channels and
        collectives count messages, not bytes, while they send)."""
        for channel in self.channels:
            channel.flush()
        self._flush_counts()

    def cost_of(self, devices: tuple[int, ...]) -> Cost:
        """What prices the compute of a lockstep group on ``devices``
        (:meth:`~.cost.Costs.of`)."""
        return self.costs.of(devices)

    def ledger(self, devices: tuple[int, ...]) -> MemoryLedger:
        """The ledger shared by ``devices`` (which work in lockstep), created on first use,
        with the first device's capacity (see :meth:`group_ledger`)."""
        first = dict.get(self.memory, devices[0])
        if first is not None and first.devices == devices:
            return first
        if any(dict.get(self.memory, d) is not None for d in devices):
            raise ValueError(f"devices {devices} already have ledgers of their own")
        capacity = self.cluster.device_of(devices[0]).memory_bytes
        ledger = MemoryLedger(devices, capacity, partial(getattr, self.env, "_now"))  # env.now
        for d in devices:
            self.memory[d] = ledger
        return ledger

    def group_ledger(self, devices: tuple[int, ...]) -> MemoryLedger | None:
        """:meth:`ledger`, or None when the devices' memories differ in size: then each
        device keeps a ledger of its own (created when first charged), which runs out
        of memory at its own capacity."""
        cluster = self.cluster
        if (
            not cluster.homogeneous
            and len({cluster.device_of(d).memory_bytes for d in devices}) > 1
        ):
            return None
        return self.ledger(devices)

    def memory_records(self) -> dict[int, MemoryRecord]:
        """Every device's ledger, frozen (:meth:`~.memory.MemoryLedger.frozen`); devices
        in lockstep share one record, as they shared one ledger."""
        frozen: dict[int, MemoryRecord] = {}
        out = {}
        for d, ledger in self.memory.items():
            record = frozen.get(id(ledger))
            if record is None:
                record = frozen[id(ledger)] = ledger.frozen()
            out[d] = record
        return out

    def split_ledger(self, devices: tuple[int, ...]) -> None:
        """Give each of ``devices`` a ledger of its own, with the shared history."""
        shared = self.memory[devices[0]]
        for d in shared.devices:
            self.memory[d] = shared.copy_for(d)

    # -- compute ---------------------------------------------------------------------------
    def compute(
        self, devices: tuple[int, ...], seconds: float, name: str, cat: str, **args
    ) -> simpy.Timeout:
        """Occupy the compute stream of ``devices`` for ``seconds`` from now."""
        start = self.env.now
        trace = self.trace
        label = trace.label_id(COMPUTE, name, cat, **args)
        trace.record(trace.track_id(trace.group_id(devices), label), start, start + seconds)
        return self.env.timeout(seconds)

    def segment_time(self, segment: ComputeSegment) -> float:
        return self.cost.segment_time(segment)

    # -- communication ---------------------------------------------------------------------
    def _count(
        self,
        shown: tuple[int, ...],
        sent: tuple[int, ...] | int,
        kind: str,
        to: tuple[int, ...] | None = None,
    ) -> None:
        """Charge the bytes every device of ``shown`` sent (``sent`` per timed rank); a
        device sending to itself (``to``) sends nothing. Counted when the counters are
        read (:meth:`count_channels`): a collective repeated every layer costs a tally."""
        key = (shown, sent, kind, to)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _flush_counts(self) -> None:
        for tally in self._pending:
            self._counts[tally[0]] += tally[1]
            tally[1] = 0
        self._pending.clear()
        bytes_sent, comm_bytes = self._bytes_sent, self._comm_bytes
        for (shown, sent, kind, to), times in self._counts.items():
            per = (sent,) if isinstance(sent, int) else sent
            for i, d in enumerate(shown):
                if to is None or to[i] != d:
                    b = per[i % len(per)] * times
                    bytes_sent[d] += b
                    comm_bytes[kind] += b
        self._counts.clear()

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
        start, end = self.network.reserve(route, self.env.now, duration, stream_of(kind))
        self._count((src,), nbytes, kind)
        trace = self.trace
        label = trace.label_id(COMM, name, kind, bytes=nbytes, link=route.kind, **args)
        track = trace.track_id(trace.group_id((src,)), label, trace.group_id((dst,)))
        trace.record(track, start, end)
        return end

    def send_group(
        self,
        srcs: tuple[int, ...],
        dsts: tuple[int, ...],
        nbytes: int | tuple[int, ...],
        kind: str,
        name: str,
        seconds: float | None = None,
        shown: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
        mb: int = -1,
    ) -> float:
        """``srcs[i]`` sends ``nbytes`` (or ``nbytes[i]``) to ``dsts[i]`` for every ``i``,
        all now; returns when the last arrives. One trace row when they all move
        together; ``name`` may show the micro-batch ``mb`` as ``{mb}``. (A message
        sent again and again is cheaper through a :meth:`channel`.)"""
        return self.channel(srcs, dsts, nbytes, kind, name, seconds, shown).send(mb)

    def channel(
        self,
        srcs: tuple[int, ...],
        dsts: tuple[int, ...],
        nbytes: int | tuple[int, ...],
        kind: str,
        name: str,
        seconds: float | None = None,
        shown: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    ) -> Channel:
        """A :class:`~simulator.engine.channel.Channel` for messages like this one."""
        return Channel(self, srcs, dsts, nbytes, kind, name, seconds, shown)

    def collective(
        self,
        plan: TransferPlan,
        devices: tuple[int, ...],
        kind: str,
        name: str,
        shown: tuple[int, ...] | None = None,
    ) -> float:
        """Run ``plan`` over ``devices`` starting now; returns its end time."""
        now = self.env.now
        if not plan.sends:
            return now
        if self.collective_detail == "steps":
            trace, network = self.trace, self.network
            mirrored = bool(network.mirror) and shown is not None and shown != devices
            if network.mirror and not mirrored:
                network.catch_up(devices, self.own_free)
            shown = shown or devices
            self._count(shown, plan.bytes_by_rank, kind)
            stream = stream_of(kind)
            times = network.time_plan(plan, devices, now, stream=stream)
            if mirrored:
                own = self.own_free
                for t, (_, end) in zip(plan.transfers, times, strict=True):
                    route = network.route(devices[t.src], devices[t.dst])
                    own[lane(route.out_port, stream)] = own[lane(route.in_port, stream)] = end
            copies = len(shown) // len(devices)
            for t, (start, end) in zip(plan.transfers, times, strict=True):
                link = network.route(devices[t.src], devices[t.dst]).kind
                label = trace.label_id(
                    COMM, name, kind, bytes=t.nbytes, link=link, step=t.step, op=plan.op,
                    algorithm=plan.algorithm,
                )  # fmt: skip
                p = len(devices)
                src = trace.group_id(tuple(shown[c * p + t.src] for c in range(copies)))
                dst = trace.group_id(tuple(shown[c * p + t.dst] for c in range(copies)))
                trace.record(trace.track_id(src, label, dst), start, end)
            return max(end for _, end in times)
        return self.book(self.fused(plan, devices, kind, name, shown))

    def fused(
        self,
        plan: TransferPlan,
        devices: tuple[int, ...],
        kind: str,
        name: str,
        shown: tuple[int, ...] | None = None,
    ) -> FusedCollective:
        """Everything about booking ``plan`` over ``devices`` as one block that does not
        depend on when (``collective_detail = "fused"``): a caller that runs the same
        collective again and again keeps it and hands it to :meth:`book`."""
        network, trace = self.network, self.trace
        mirrored = bool(network.mirror) and shown is not None and shown != devices
        shown = shown or devices
        key = (plan, devices)
        cached = self._fused.get(key)
        if cached is None:
            cached = self._fused[key] = (
                network.idle_duration(plan, devices),
                network.ports_of(plan, devices),
            )
        duration, ports = cached
        sent = plan.bytes_by_rank
        label = trace.label_id(
            COMM,
            name,
            kind,
            bytes=sent[0] if len(set(sent)) == 1 else sent * (len(shown) // len(devices)),
            op=plan.op,
            algorithm=plan.algorithm,
        )
        track = trace.track_id(trace.group_id(shown), label, NO_PEER)
        stream = stream_of(kind)
        counted = (shown, sent, kind, None)
        tally = self._tallies.setdefault(counted, [counted, 0])
        return FusedCollective(
            devices, ports, duration, track, tally, mirrored, stream,
            network.lane_sets(ports, stream),
        )  # fmt: skip

    def book(self, f: FusedCollective) -> float:
        """Run a fused collective (:meth:`fused`) from now; returns its end time."""
        network = self.network
        if network.mirror and not f.mirrored:
            network.catch_up(f.devices, self.own_free)
        tally = f.count
        if not tally[1]:  # the first since the counters were read: keep its place
            self._counts.setdefault(tally[0], 0)
            self._pending.append(tally)
        tally[1] += 1
        own = self.own_free if f.mirrored else None
        start, end = network.reserve_lanes(f.lanes, self.env.now, f.duration, own)
        self.trace.record(f.track, start, end)
        return end
