"""Booking a collective's plan on the ports: lanes per channel, rounds as vectors.

:class:`PlacedPlan` is one :class:`~simulator.transfer.TransferPlan` mapped
onto one group of devices (:meth:`simulator.engine.network.Network.placed`).
It works out once what depends only on the plan and the devices -- every
message's ports, its link, the lanes its channel uses -- and
:meth:`PlacedPlan.book` books the rounds on the ports' current state, with the
contention model and the channel lanes :mod:`simulator.engine.network`
describes -- the plan's stream queues on its own lanes and shares the ports
with the other streams' traffic already booked: a round without two messages
on one lane is booked as a few numpy vector operations, any other round
message by message, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..hardware import ClusterSpec
from ..transfer import TransferPlan
from .streams import STREAMS, shared

#: Rounds with fewer messages are timed message by message (numpy costs more there).
_VECTOR_MIN = 48
#: Plans of at most this many messages keep their per-round arrays between bookings.
_KEEP_MESSAGES = 100_000


class PlacedPlan:
    """One plan over one group of devices: its ports, lanes and message costs.

    Ports are renumbered ``0 .. K-1`` for the group (NVLink out and in of every
    rank, then the NICs), and the lanes of port ``k`` are ``k L .. k L + L-1``
    for the plan's ``L`` lanes, one per channel and flow
    (:mod:`simulator.engine.network`, :class:`~simulator.transfer.Round`). A
    channel's flows queue apart but split its share of every port it uses: a
    channel is one thread block, whose bandwidth a pipelined tree's chunks going
    up and those coming down share. What depends on the
    plan and the devices only is worked out here, once; :meth:`book` books it
    on the ports' current state.
    """

    def __init__(
        self,
        cluster: ClusterSpec,
        plan: TransferPlan,
        devices: tuple[int, ...],
        link_factor: Callable[[int, int, bool], float] | None = None,
    ) -> None:
        self.plan = plan
        self.devices = devices
        #: ``(src, dst, inter_node) -> bandwidth multiplier`` of degraded links (faults)
        self.link_factor = link_factor
        dev = np.asarray(devices, dtype=np.int64)
        per_node, nics = cluster.devices_per_node, cluster.nics
        self.node = dev // per_node
        nic = self.node * nics + (dev % per_node) * nics // per_node
        lead = (nic // nics) * per_node + -(-(nic % nics) * per_node // nics)
        # the ids of :func:`simulator.engine.network.port`: 4 d + 2 network + direction
        real = np.concatenate([4 * dev, 4 * dev + 1, 4 * lead + 2, 4 * lead + 3])
        self.ports, compact = np.unique(real, return_inverse=True)
        p = len(devices)
        self.intra_out, self.intra_in = compact[:p], compact[p : 2 * p]
        self.nic_out, self.nic_in = compact[2 * p : 3 * p], compact[3 * p :]
        self.links = _rank_links(cluster, self.node)
        self._arrays: dict[int, Any] = {}
        self._patterns: dict[tuple[int, int, int], tuple] = {}
        # which channels use which port: a port's lanes split its bandwidth, every flow of
        # every channel that uses it (a channel's flows share its one thread block)
        self.lanes = plan.channels * plan.flows
        used = np.zeros((len(self.ports), plan.channels), dtype=bool)
        for r in plan.rounds:
            out, into, _ = self._route(r)
            used[out, r.channel] = True
            used[into, r.channel] = True
        self.used = used.any(axis=1)
        self.share = np.maximum(used.sum(axis=1) * plan.flows, 1)
        # small plans keep every round's costs: they are booked again and again
        self.rounds = [(r, self._costs(r), r.arrays(self._arrays)) for r in plan.rounds] if (
            plan.messages <= _KEEP_MESSAGES) else None  # fmt: skip

    def _lane(self, r: Any) -> int:
        """The lane of round ``r``'s channel and flow on every port."""
        return r.channel * self.plan.flows + r.flow

    def _route(self, r: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Compact out and in ports of every message of round ``r``, and which stay
        inside a node (cached per pattern: rounds of a ring share theirs)."""
        key = (id(r.src), id(r.dst), 0)
        hit = self._patterns.get(key)
        if hit is None:
            src, dst, _ = r.arrays(self._arrays)
            inside = self.node[src] == self.node[dst]
            out = np.where(inside, self.intra_out[src], self.nic_out[src])
            into = np.where(inside, self.intra_in[dst], self.nic_in[dst])
            hit = self._patterns[key] = (out, into, inside)
        return hit

    def _costs(self, r: Any) -> tuple:
        """Per message of round ``r``: latency, seconds per byte, lanes; and whether two
        messages of the round share a lane (then they take turns)."""
        key = (id(r.src), id(r.dst), 1 + self._lane(r))
        hit = self._patterns.get(key)
        if hit is None:
            out, into, inside = self._route(r)
            src, dst, _ = r.arrays(self._arrays)
            # a message inside a node takes its NVLink; between nodes, the slower NIC
            lat_intra, bw_intra, lat_inter, bw_inter = self.links
            alpha = np.where(inside, lat_intra[src], np.maximum(lat_inter[src], lat_inter[dst]))
            share = np.maximum(self.share[out], self.share[into])
            per_byte = share / np.where(inside, bw_intra[src],
                                        np.minimum(bw_inter[src], bw_inter[dst]))  # fmt: skip
            if self.link_factor is not None:  # a slow link stretches what crosses it
                ds = self.devices
                factor = np.array([self.link_factor(ds[a], ds[b], not i) for a, b, i in zip(
                    src.tolist(), dst.tolist(), inside.tolist(), strict=True)])  # fmt: skip
                per_byte = per_byte / factor
            c, lanes = self._lane(r), self.lanes
            lane_out, lane_in = out * lanes + c, into * lanes + c
            n = len(out)
            clash = len(np.unique(lane_out)) < n or len(np.unique(lane_in)) < n
            hit = self._patterns[key] = (alpha, per_byte, lane_out, lane_in, clash)
        return hit

    def used_ports(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.ports[self.used])

    def _each_round(self) -> Any:
        if self.rounds is not None:
            return self.rounds
        return ((r, self._costs(r), r.arrays(self._arrays)) for r in self.plan.rounds)

    def book(
        self, free: dict[int, float], start: float, record: bool, stream: int = 0
    ) -> tuple[float, list[tuple[float, float]]]:
        """Book every round on ``stream``'s lanes of the ports (``free``: lane ->
        when it is next free); returns the end and, when ``record``, ``(start, end)``
        per message."""
        plan, channels, lanes_per_port = self.plan, self.plan.channels, self.lanes
        p = plan.group_size
        n = len(STREAMS)
        ports = [int(q) for q in self.ports]
        # every lane starts where its port's lane of this stream is free
        mine = [free.get(q * n + stream, 0.0) for q in ports]
        lanes = np.repeat(np.array(mine, dtype=float), lanes_per_port)
        # until when the other streams hold each port (they share it, module docstring)
        others = np.array([max(free.get(q * n + s, 0.0) for s in range(n) if s != stream)
                           for q in ports])  # fmt: skip
        start = float(start)
        shares = bool(others.max(initial=0.0) > start)
        flows = plan.flows
        ready = np.full((channels * flows, p), start)
        times: list[tuple[np.ndarray, np.ndarray]] = []
        end = start
        for r, (alpha, per_byte, lane_out, lane_in, clash), (
            src,
            dst,
            nbytes,
        ) in self._each_round():
            seconds = alpha + nbytes * per_byte
            row = r.channel * flows + r.flow
            if r.wait:
                go = np.maximum(ready[row, src], start)
                for flow in r.after:
                    go = np.maximum(go, ready[r.channel * flows + flow, src])
            else:
                go = np.full(len(src), start)
            busy = None
            if shares:
                out, into = lane_out // lanes_per_port, lane_in // lanes_per_port
                busy = np.maximum(others[out], others[into])
            if clash or len(src) < _VECTOR_MIN:
                begin, finish = _one_by_one(go, seconds, lane_out, lane_in, lanes, busy)
            else:
                begin = np.maximum(go, np.maximum(lanes[lane_out], lanes[lane_in]))
                finish = begin + seconds
                if busy is not None:
                    finish += np.clip(busy - begin, 0.0, seconds)
                lanes[lane_out] = finish
                lanes[lane_in] = finish
            np.maximum.at(ready[row], dst, finish)  # receipts count after the round
            end = max(end, float(finish.max()))
            if record:
                times.append((begin, finish))
        # a port's lane is free when the last of its channels' lanes is
        busiest = lanes.reshape(-1, lanes_per_port).max(axis=1)
        for q, used, t in zip(ports, self.used, busiest, strict=True):
            if used:
                free[q * n + stream] = float(t)
        if not record:
            return end, []
        pairs = [zip(b.tolist(), f.tolist(), strict=True) for b, f in times]
        return end, [pair for round_pairs in pairs for pair in round_pairs]


def _rank_links(cluster: ClusterSpec, node: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per rank, the latency and effective bandwidth of its NVLink port and of its NIC:
    those of its node's kind (:meth:`~simulator.hardware.ClusterSpec.kinds`)."""
    kinds = cluster.kinds()
    which = np.searchsorted([nodes.start for nodes, _ in kinds], node, side="right") - 1
    table = np.array(
        [
            (n.intra_node.latency, n.intra_node.effective_bandwidth,
             n.inter_node.latency, n.inter_node.effective_bandwidth)
            for _, n in kinds
        ]
    )  # fmt: skip
    return tuple(table[which, i] for i in range(4))


def _one_by_one(
    go: np.ndarray, seconds: np.ndarray, lane_out: np.ndarray, lane_in: np.ndarray,
    lanes: np.ndarray, busy: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Book a round's messages in order, each behind the ones before it on its lanes
    (and beside the other streams holding its ports until ``busy``)."""
    begin, finish = np.empty(len(go)), np.empty(len(go))
    others = busy.tolist() if busy is not None else [0.0] * len(go)
    for i, (ready, s, a, b, until) in enumerate(
        zip(go.tolist(), seconds.tolist(), lane_out.tolist(), lane_in.tolist(), others,
            strict=True)
    ):  # fmt: skip
        t = max(ready, lanes[a], lanes[b])
        begin[i] = t
        finish[i] = lanes[a] = lanes[b] = shared(t, s, until)
    return begin, finish
