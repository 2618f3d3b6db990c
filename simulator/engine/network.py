"""Links, routes and how messages share them.

Topology (see :mod:`simulator.hardware`): every device has an *intra-node*
port into its node's switch; between nodes, traffic goes through the node's
NICs, and device ``g`` of a node uses NIC ``g * nics // devices_per_node``.
Each port has an ``out`` and an ``in`` direction (full duplex). A message from
``a`` to ``b`` uses ``a``'s out direction and ``b``'s in direction of the
intra-node ports when both sit in one node, and otherwise the out direction of
``a``'s NIC and the in direction of ``b``'s NIC: devices that share a NIC share
its bandwidth. The switches themselves never block. In a cluster of several
kinds of node a message inside a node moves at that node's NVLink speed, and
one between nodes at the slower NIC's (:func:`~simulator.hardware.slower`).

Contention model: **streams queue, and streams share.** Traffic belongs to a
*stream*, named after its kind (:data:`STREAMS`): tensor-parallel
collectives, pipeline messages, data-parallel collectives. Within one stream a
port direction carries one message at a time, first come first served -- the
operations of one NCCL communicator on one CUDA stream run in order. A
message holds both of its port directions for ``latency + bytes / bandwidth``
(its alpha-beta time) and waits until its stream is free on both. Two
messages of one stream through one port therefore take twice as long as one;
messages on disjoint ports do not interact.

Different streams run at the same time and share the port's bandwidth, as
NCCL channels launched on separate streams do: a message that starts while
another stream still holds one of its ports until ``T`` gets half the
bandwidth until then (processor sharing), so it lasts ``d + min(d, T -
start)`` instead of ``d``, and never waits for the other stream's messages to
end. (What is already booked keeps its end: a newcomer takes the slowdown of
the sharing, and a small pipeline message beside a large gradient bucket
takes at most twice its time instead of the bucket's.) The model is
deterministic and cheap: a stream's lane on a port is just the time at which
it becomes free, so reserving a message is O(1) and needs no simulation
process of its own.

*Channels.* A collective may run as several channels (parallel rings, NCCL's
way of using every NIC; :mod:`simulator.comm.layout`). Channels run at the
same time and split the bandwidth of the ports they share: while a
collective runs, a port used by ``k`` of its channels is ``k`` lanes, each
with ``1/k`` of the bandwidth and its own queue, and a message takes
``latency + bytes x k / bandwidth`` on the busier of its two ports. The
latencies of different channels overlap, as they do on real hardware, and
one channel's messages never wait behind another's. Over one switch ``C``
channels of ``n/C`` bytes thus take exactly the time of one channel of ``n``:
every closed form holds per channel.

A port direction is a small integer (:func:`port`), and a stream's lane on it
another (:func:`lane`), so that the reservation state is one dictionary of
floats holding only the lanes some message used: a cluster of a billion
devices costs nothing until its devices talk. A NIC's ports are those of the
first device that uses it.

A collective reserves all of its messages when it starts, round by round in
the order of its plan (:mod:`simulator.transfer`), each no earlier than every
message its sender received before in the same channel has arrived; the
messages of a large round are timed as numpy vectors, so timing a ring over
``p`` devices costs ``O(p)`` Python steps. Later traffic of the same stream
through the same ports queues behind them; later traffic of another stream
shares the ports with them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..hardware import ClusterSpec, LinkSpec
from ..transfer import TransferPlan
from .booking import PlacedPlan
from .streams import STREAMS, LaneSet, lane, lanes_of, shared

INTRA, INTER = "intra", "inter"
_OUT, _IN = 0, 1
_NETWORKS = (INTRA, INTER)


def port(device: int, network: str, direction: int) -> int:
    """The id of one port direction: ``device``'s ``intra``/``inter`` port, out (0) or in (1)."""
    return 4 * device + 2 * _NETWORKS.index(network) + direction


def describe_port(p: int) -> str:
    """``9`` -> ``"device 2 intra in"``: a port id in words, for error messages and traces
    (an ``inter`` port is the NIC that device is the first user of)."""
    device, rest = divmod(p, 4)
    network, direction = divmod(rest, 2)
    return f"device {device} {_NETWORKS[network]} {'in' if direction else 'out'}"


@dataclass(frozen=True)
class Route:
    """The ports a message uses and the link that sets its speed."""

    out_port: int
    in_port: int
    link: LinkSpec
    kind: str  # "intra" or "inter"

    def seconds(self, nbytes: float) -> float:
        """Alpha-beta time of one message: ``latency + bytes / bandwidth``."""
        return self.link.latency + nbytes / self.link.effective_bandwidth


#: :meth:`Network.idle_duration` by cluster, plan and devices, for every run of this process
_IDLE: dict[tuple[ClusterSpec, TransferPlan, tuple[int, ...]], float] = {}
_IDLE_MAX = 4096


class Network:
    """Routes between devices and the reservation state of every port."""

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        #: lane (:func:`lane`) -> when it is next free
        self.free_at: defaultdict[int, float] = defaultdict(float)
        self._routes: dict[tuple[int, int], Route] = {}
        self._placed: dict[tuple[TransferPlan, tuple[int, ...]], PlacedPlan] = {}
        self._lane_sets: dict[tuple[tuple[int, ...], int], LaneSet] = {}
        #: device -> the device whose ports its ports follow (folded replicas; set by
        #: :meth:`fold`)
        self.mirror: dict[int, int] = {}
        #: group -> its lanes that mirror a twin's, by the twin's lane, and the twins'
        #: own ends it last caught up to (:meth:`catch_up`)
        self._mirrored: dict[
            tuple[int, ...], tuple[list[tuple[int, list[int]]], dict[int, float]]
        ] = {}
        #: ``(src, dst, inter_node) -> bandwidth multiplier`` for degraded links (faults)
        self.link_factor: Callable[[int, int, bool], float] | None = None

    # -- ports -----------------------------------------------------------------------------
    def nic_port(self, device: int, direction: int) -> int:
        """The port of the NIC ``device`` reaches other nodes through."""
        c = self.cluster
        return port(c.nic_lead(c.nic_of(device)), INTER, direction)

    def ports_of_device(self, d: int) -> tuple[int, ...]:
        """Every port id device ``d``'s traffic can use: its NVLink out and in, then its
        NIC's out and in (which other devices of the node may share)."""
        return (port(d, INTRA, _OUT), port(d, INTRA, _IN), self.nic_port(d, _OUT),
                self.nic_port(d, _IN))  # fmt: skip

    def route(self, src: int, dst: int) -> Route:
        """The route from ``src`` to ``dst`` (which must differ)."""
        cached = self._routes.get((src, dst))
        if cached is not None:
            return cached
        if src == dst:
            raise ValueError(f"no route from device {src} to itself")
        cluster = self.cluster
        inter = cluster.node_of(src) != cluster.node_of(dst)
        link = cluster.link_between(src, dst)
        assert link is not None
        if self.link_factor is not None:
            factor = self.link_factor(src, dst, inter)
            if factor != 1.0:
                link = replace(link, bandwidth=link.bandwidth * factor)
        if not inter:
            route = Route(port(src, INTRA, _OUT), port(dst, INTRA, _IN), link, INTRA)
        else:
            route = Route(self.nic_port(src, _OUT), self.nic_port(dst, _IN), link, INTER)
        self._routes[(src, dst)] = route
        return route

    def busy_elsewhere(self, ports: tuple[int, ...], stream: int, free: dict[int, float]) -> float:
        """When the streams other than ``stream`` are last free on ``ports``."""
        if free is self.free_at:
            return self.lane_sets(ports, stream).busy(free)
        others = self.lane_sets(ports, stream).others
        return max(map(free.__getitem__, others)) if others else 0.0

    def lane_sets(self, ports: tuple[int, ...], stream: int) -> LaneSet:
        """``stream``'s lanes on ``ports`` and the other streams' lanes there (worked out
        once per set of ports: a collective books the same ones every time it runs)."""
        key = (ports, stream)
        hit = self._lane_sets.get(key)
        if hit is None:
            n = len(STREAMS)
            mine = [q * n + stream for q in ports]
            others = [q * n + s for q in ports for s in range(n) if s != stream]
            hit = self._lane_sets[key] = LaneSet(mine, others)
        return hit

    def reserve(
        self,
        route: Route,
        ready: float,
        seconds: float,
        stream: int = 0,
        free_at: dict[int, float] | None = None,
    ) -> tuple[float, float]:
        """Book both ports of ``route`` for ``seconds`` on ``stream``'s lanes, no
        earlier than ``ready``, sharing them with the other streams (module docstring).

        Returns the message's ``(start, end)``.
        """
        free = self.free_at if free_at is None else free_at
        a, b = lane(route.out_port, stream), lane(route.in_port, stream)
        start = max(ready, free[a], free[b])
        end = shared(start, seconds, self.busy_elsewhere((route.out_port, route.in_port),
                                                         stream, free))  # fmt: skip
        free[a] = free[b] = end
        return start, end

    # -- collectives -----------------------------------------------------------------------
    def time_plan(
        self,
        plan: TransferPlan,
        devices: tuple[int, ...],
        start: float,
        free_at: dict[int, float] | None = None,
        stream: int = 0,
    ) -> list[tuple[float, float]]:
        """Reserve every message of ``plan`` (ranks mapped to ``devices``) on ``stream``.

        Returns ``(start, end)`` per transfer, in the order of ``plan.transfers``.
        With ``free_at`` given, books a scratch copy of the ports instead of the
        real ones.
        """
        lanes = self.free_at if free_at is None else free_at
        return self.placed(plan, devices).book(lanes, start, record=True, stream=stream)[1]

    def idle_duration(self, plan: TransferPlan, devices: tuple[int, ...]) -> float:
        """How long ``plan`` takes on otherwise idle links (memory linear in the group);
        on a cluster without faults, once per process for every run (a planner's worker
        simulates many layouts whose groups repeat, some of hundreds of devices)."""
        if self.link_factor is not None:
            return self.placed(plan, devices).book(defaultdict(float), 0.0, record=False)[0]
        key = (self.cluster, plan, devices)
        seconds = _IDLE.get(key)
        if seconds is None:
            if len(_IDLE) >= _IDLE_MAX:
                _IDLE.clear()
            seconds = self.placed(plan, devices).book(defaultdict(float), 0.0, record=False)[0]
            _IDLE[key] = seconds
        return seconds

    def ports_of(self, plan: TransferPlan, devices: tuple[int, ...]) -> tuple[int, ...]:
        """Every port direction ``plan`` uses on ``devices``, sorted."""
        return self.placed(plan, devices).used_ports()

    def placed(self, plan: TransferPlan, devices: tuple[int, ...]) -> PlacedPlan:
        """``plan`` mapped onto ``devices``: its ports, lanes and costs, worked out once."""
        key = (plan, devices)
        hit = self._placed.get(key)
        if hit is None:
            hit = self._placed[key] = PlacedPlan(self.cluster, plan, devices, self.link_factor)
        return hit

    def catch_up(self, devices: tuple[int, ...], own: dict[int, float]) -> None:
        """Bring the ports of mirrored devices up to their twins' own traffic (see
        :mod:`simulator.runtime.fold`): a folded replica's ports saw none of its own
        traffic, which its twin's saw for it; ``own`` holds when each lane's own
        traffic (not the collectives the replicas share) last ends. A NIC a device
        shares with its twin is the same port and needs nothing.

        A lane's free moment only ever moves later, so a twin's lane whose own end is
        what this group last caught up to needs nothing either: only the twins' lanes
        that have had traffic of their own since are read across the group's devices
        (a data-parallel group of hundreds of folded replicas has a few twins)."""
        free = self.free_at
        by_twin, caught = self._mirrored_lanes(devices)
        for b, mine in by_twin:
            end = own.get(b, 0.0)
            if caught.get(b) == end:
                continue
            caught[b] = end
            for a in mine:
                if end > free.get(a, 0.0):
                    free[a] = end

    def fold(self, twins: dict[int, int]) -> None:
        """Let each device of ``twins`` follow its twin's ports (:mod:`simulator.runtime.fold`)."""
        self.mirror = twins
        self._mirrored = {}

    def _mirrored_lanes(
        self, devices: tuple[int, ...]
    ) -> tuple[list[tuple[int, list[int]]], dict[int, float]]:
        """The lanes of ``devices``' ports that mirror another's, by the twin's lane they
        follow (:meth:`catch_up`), worked out once per group; and, per twin's lane, the
        own end the group last caught up to."""
        hit = self._mirrored.get(devices)
        if hit is None:
            by_twin: dict[int, list[int]] = {}
            for d in devices:
                twin = self.mirror.get(d)
                if twin is None:
                    continue
                for mine, theirs in zip(
                    self.ports_of_device(d), self.ports_of_device(twin), strict=True
                ):
                    if mine != theirs:
                        for a, b in zip(lanes_of(mine), lanes_of(theirs), strict=True):
                            by_twin.setdefault(b, []).append(a)
            hit = self._mirrored[devices] = (list(by_twin.items()), {})
        return hit

    def reserve_lanes(
        self,
        lanes: LaneSet,
        ready: float,
        seconds: float,
        own: dict[int, float] | None = None,
    ) -> tuple[float, float]:
        """Book a set of ports together for ``seconds`` (a fused collective) on one
        stream's ``lanes`` there, sharing the ports with the other streams' lanes, both
        worked out once by :meth:`lane_sets`; no earlier than ``ready``. With ``own``
        (the lanes folded replicas mirror, :meth:`catch_up`), note the end there too."""
        free = self.free_at
        mine = lanes.mine
        busy = max(lanes.read(free), default=ready)
        start = busy if busy > ready else ready
        end = shared(start, seconds, lanes.busy(free))
        if own is None:
            for q in mine:
                free[q] = end
        else:
            for q in mine:
                free[q] = own[q] = end
        return start, end
