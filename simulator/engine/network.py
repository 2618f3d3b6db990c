"""Links, routes and how messages share them.

Topology (see :mod:`simulator.hardware`): every device has an *intra-node*
port into its node's switch and an *inter-node* port into the cluster's
network; each port has an ``out`` and an ``in`` direction (full duplex). A
message from ``a`` to ``b`` uses ``a``'s out direction and ``b``'s in
direction of the intra-node ports when both sit in one node, of the
inter-node ports otherwise; the switches themselves never block.

Contention model: **a port direction carries one message at a time, first come
first served.** A message holds both of its port directions for
``latency + bytes / bandwidth`` (its alpha-beta time), and waits until both
are free. Two messages through one port therefore take twice as long as one;
messages on disjoint ports do not interact. The model is deterministic and
cheap: a port is just the time at which it becomes free, so reserving a
message is O(1) and needs no simulation process of its own.

A port direction is a small integer (:func:`port`), so that the reservation
state is one dictionary of floats holding only the ports some message used:
a cluster of a billion devices costs nothing until its devices talk.

A collective reserves all of its messages when it starts, in the order of its
plan, each no earlier than the messages it depends on have arrived. Later
traffic through the same ports queues behind them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..hardware import ClusterSpec, LinkSpec
from ..transfer import TransferPlan

INTRA, INTER = "intra", "inter"
_OUT, _IN = 0, 1
_NETWORKS = (INTRA, INTER)


def port(device: int, network: str, direction: int) -> int:
    """The id of one port direction: ``device``'s ``intra``/``inter`` port, out (0) or in (1)."""
    return 4 * device + 2 * _NETWORKS.index(network) + direction


def describe_port(p: int) -> str:
    """``9`` -> ``"device 2 intra in"``: a port id in words, for error messages and traces."""
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


class Network:
    """Routes between devices and the reservation state of every port."""

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        self.free_at: defaultdict[int, float] = defaultdict(float)
        self._routes: dict[tuple[int, int], Route] = {}
        #: device -> the device whose ports its ports follow (folded replicas)
        self.mirror: dict[int, int] = {}
        #: ``(src, dst, inter_node) -> bandwidth multiplier`` for degraded links (faults)
        self.link_factor: Callable[[int, int, bool], float] | None = None

    def route(self, src: int, dst: int) -> Route:
        """The route from ``src`` to ``dst`` (which must differ)."""
        cached = self._routes.get((src, dst))
        if cached is not None:
            return cached
        if src == dst:
            raise ValueError(f"no route from device {src} to itself")
        same_node = self.cluster.node_of(src) == self.cluster.node_of(dst)
        kind = INTRA if same_node else INTER
        link = self.cluster.intra_node if same_node else self.cluster.inter_node
        if self.link_factor is not None:
            factor = self.link_factor(src, dst, not same_node)
            if factor != 1.0:
                link = replace(link, bandwidth=link.bandwidth * factor)
        route = Route(port(src, kind, _OUT), port(dst, kind, _IN), link, kind)
        self._routes[(src, dst)] = route
        return route

    def reserve(
        self, route: Route, ready: float, seconds: float, free_at: dict[int, float] | None = None
    ) -> tuple[float, float]:
        """Book both ports of ``route`` for ``seconds``, no earlier than ``ready``.

        Returns the message's ``(start, end)``.
        """
        ports = self.free_at if free_at is None else free_at
        a, b = route.out_port, route.in_port
        start = max(ready, ports[a], ports[b])
        end = start + seconds
        ports[a] = ports[b] = end
        return start, end

    def time_plan(
        self,
        plan: TransferPlan,
        devices: tuple[int, ...],
        start: float,
        free_at: dict[int, float] | None = None,
    ) -> list[tuple[float, float]]:
        """Reserve every message of ``plan`` (ranks mapped to ``devices``).

        Returns ``(start, end)`` per transfer. With ``free_at`` given, books a
        scratch copy of the ports instead of the real ones.
        """
        times: list[tuple[float, float]] = []
        for t in plan.transfers:
            ready = max([start, *(times[d][1] for d in t.deps)])
            route = self.route(devices[t.src], devices[t.dst])
            times.append(self.reserve(route, ready, route.seconds(t.nbytes), free_at))
        return times

    def idle_duration(self, plan: TransferPlan, devices: tuple[int, ...]) -> float:
        """How long ``plan`` takes on otherwise idle links."""
        times = self.time_plan(plan, devices, 0.0, free_at=defaultdict(float))
        return max((end for _, end in times), default=0.0)

    def ports_of(self, plan: TransferPlan, devices: tuple[int, ...]) -> tuple[int, ...]:
        """Every port direction ``plan`` uses on ``devices``, sorted."""
        ports: set[int] = set()
        for t in plan.transfers:
            route = self.route(devices[t.src], devices[t.dst])
            ports.update((route.out_port, route.in_port))
        return tuple(sorted(ports))

    def catch_up(self, devices: tuple[int, ...], own: dict[int, float]) -> None:
        """Bring the ports of mirrored devices up to their twins' own traffic (see
        :mod:`simulator.runtime.fold`): a folded replica's ports saw none of its own
        traffic, which its twin's saw for it; ``own`` holds when each port's own
        traffic (not the collectives the replicas share) last ends."""
        free = self.free_at
        for d in devices:
            twin = self.mirror.get(d)
            if twin is not None:
                for k in range(4):
                    mine, theirs = 4 * d + k, own.get(4 * twin + k, 0.0)
                    if theirs > free[mine]:
                        free[mine] = theirs

    def reserve_block(
        self, ports: tuple[int, ...], ready: float, seconds: float
    ) -> tuple[float, float]:
        """Book a set of ports together for ``seconds`` (a fused collective)."""
        free = self.free_at
        start = max([ready, *(free[p] for p in ports)])
        end = start + seconds
        for p in ports:
            free[p] = end
        return start, end
