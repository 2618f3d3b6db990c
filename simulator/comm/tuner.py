"""The ``auto`` algorithm: pick the fastest algorithm per operation, size and layout.

NCCL does not run one algorithm for every collective. Its tuner
(NVIDIA/nccl, ``src/graph/tuning.cc``, ``ncclTopoTuneModel`` and
``ncclTopoGetAlgoTime``) models every candidate as ``latency + bytes /
bandwidth``: a latency that counts the hops on the algorithm's critical path
(a ring's ``2 (p-1)`` steps, of which ``2 (N-1)`` cross the network; a tree's
``2 (ppn-1)`` hops inside nodes and ``2 log2 N`` across), and a bus bandwidth
of ``channels x`` the bandwidth one channel gets from the topology. It then
takes the algorithm with the least time for the message at hand. The
consequences are what a learner should see: small messages are latency-bound
and go to trees, whose ``log p`` hops beat a ring's ``p``; large ones are
bandwidth-bound and go to rings, which move the minimum data; and a group that
spans nodes runs one channel per NIC, so that all NICs carry its traffic.

This module does the same with the simulator's own algorithms and links.
:func:`estimate` prices one candidate on idle links from the group's
:class:`~.layout.GroupLayout` (alpha-beta per hop, NICs and NVLink ports
shared by the channels that use them, as :mod:`simulator.engine.network`
shares them); :func:`choose` returns the cheapest. The estimates are exact on
one switch (they are the closed forms of :mod:`.closed_forms`) and close,
not exact, across nodes (the tests bound the gap): like NCCL's, the tuner is a
model, and the simulation then times the chosen plan message by message.
Unlike NCCL there is one protocol (no LL/LL128: every message pays the link's
alpha-beta time) and there are no NVLink SHARP or CollNet algorithms.

Candidates per operation are NCCL's own: ``all_reduce`` ring and tree (NCCL's
pipelined tree, :mod:`.nccl_tree`; the two-level ``hierarchical`` is not an
algorithm of NCCL's and runs only when asked for); ``reduce_scatter`` and
``all_gather`` ring (NCCL's only algorithm for them without network offload);
``broadcast`` and ``reduce`` tree and naive; ``scatter`` and ``gather``
naive; ``all_to_all`` ring (pairwise) and naive; ``send_recv`` ring. So the
ring wins inside a node and for large messages across many nodes, and the
tree wins across two nodes, where it sends the array over the network once
each way instead of the ring's ``2 (p-1)/p`` times (NCCL prefers it there
too; NVIDIA/nccl issue #946), and for small messages across many nodes,
whose ``log`` depth beats the ring's ``p`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from ..hardware import LinkSpec
from . import nccl_tree
from .layout import GroupLayout, channel_rings

CANDIDATES: dict[str, tuple[str, ...]] = {
    "all_reduce": ("ring", "tree"),
    "reduce_scatter": ("ring",),
    "all_gather": ("ring",),
    "broadcast": ("tree", "naive"),
    "reduce": ("tree", "naive"),
    "scatter": ("naive",),
    "gather": ("naive",),
    "all_to_all": ("ring", "naive"),
    "send_recv": ("ring",),
}
#: Algorithms that run several channels, and for which operations.
CHANNELED = {"ring": tuple(CANDIDATES), "tree": ("all_reduce",)}


@dataclass(frozen=True)
class Choice:
    """An algorithm, its channels and its estimated seconds on idle links."""

    algorithm: str
    channels: int
    seconds: float

    def describe(self) -> str:
        per = f", {self.channels} channels" if self.channels > 1 else ""
        return f"{self.algorithm}{per}"


def _hop(link: LinkSpec, nbytes: float, share: int = 1) -> float:
    """One message on ``link`` whose ports ``share`` channels split."""
    return link.latency + nbytes * share / link.effective_bandwidth


def _steps(op: str, p: int) -> int:
    return 2 * (p - 1) if op == "all_reduce" else p - 1


@cache
def _ring_shares(layout: GroupLayout, channels: int) -> tuple[int, int, bool]:
    """For the channel rings on ``layout``: the most channels on one NVLink port, the
    most on one NIC port, and whether any hop crosses nodes."""
    p = len(layout)
    intra: dict[tuple[int, int], int] = {}
    nic: dict[tuple[int, int], int] = {}
    for ring in channel_rings(layout, p, channels):
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            if layout.nodes[a] == layout.nodes[b]:
                ports, keys = intra, ((a, 0), (b, 1))
            else:
                ports, keys = nic, ((layout.nics[a], 0), (layout.nics[b], 1))
            for key in keys:
                ports[key] = ports.get(key, 0) + 1
    return max(intra.values(), default=0), max(nic.values(), default=0), bool(nic)


def _ring(op: str, nbytes: float, layout: GroupLayout, channels: int) -> float:
    """``steps x`` the slowest hop of a channel: every hop of a step runs at once, and
    the slowest port lane paces the ring (NCCL: ``nsteps`` latencies plus the bytes
    over ``channels x`` the bottleneck bandwidth)."""
    p = len(layout)
    if op in ("all_to_all", "send_recv"):
        return _shifts(op, nbytes, layout)
    per = nbytes / (p * channels)
    intra_share, nic_share, crosses = _ring_shares(layout, channels)
    slowest = _hop(layout.intra, per, intra_share) if intra_share else 0.0
    if crosses:
        slowest = max(slowest, _hop(layout.inter, per, nic_share))
    return _steps(op, p) * slowest


def _shifts(op: str, nbytes: float, layout: GroupLayout) -> float:
    """Ring shifts, whose messages wait for nothing: the busiest port's load. For
    send/recv (one shift by one) the slowest message, times the messages through
    its NIC; for all-to-all every rank sends ``p-1`` blocks of ``n/p``, those to
    other nodes through a NIC its node's ranks share."""
    p = len(layout)
    per_nic: dict[int, int] = {}
    for nic in layout.nics:
        per_nic[nic] = per_nic.get(nic, 0) + 1
    if op == "send_recv":  # rank r sends to r+1: through its NIC if r+1 is elsewhere
        leaving = [layout.nodes[r] != layout.nodes[(r + 1) % p] for r in range(p)]
        through: dict[int, int] = {}
        for r in range(p):
            if leaving[r]:
                through[layout.nics[r]] = through.get(layout.nics[r], 0) + 1
        inside = _hop(layout.intra, nbytes) if not all(leaving) else 0.0
        return max(inside, max(through.values(), default=0) * _hop(layout.inter, nbytes))
    block = nbytes / p
    local = {node: layout.nodes.count(node) for node in set(layout.nodes)}
    busiest = 0.0
    for r in range(p):
        k = local[layout.nodes[r]]
        inside = (k - 1) * _hop(layout.intra, block)
        outside = per_nic[layout.nics[r]] * (p - k) * _hop(layout.inter, block)
        busiest = max(busiest, inside, outside)
    return busiest


@cache
def _tree_rounds(layout: GroupLayout, broadcast: bool) -> tuple[tuple[bool, int], ...]:
    """Per round of the binomial reduce (or broadcast) rooted at rank 0: whether a
    message crosses nodes, and the most messages through one NIC port."""
    p, out = len(layout), []
    mask = 1
    while mask < p:
        if broadcast:
            pairs = [(v, v + mask) for v in range(min(mask, p - mask))]
        else:
            pairs = [(v, v - mask) for v in range(mask, p, 2 * mask)]
        busy: dict[tuple[int, int], int] = {}
        for a, b in pairs:
            if layout.nodes[a] != layout.nodes[b]:
                for key in ((layout.nics[a], 0), (layout.nics[b], 1)):
                    busy[key] = busy.get(key, 0) + 1
        out.append((bool(busy), max(busy.values(), default=0)))
        mask *= 2
    return tuple(out)


def _tree(op: str, nbytes: float, layout: GroupLayout, channels: int = 1) -> float:
    """Binomial broadcast and reduce: every round sends the whole array; a round that
    crosses nodes takes the network's time (times the messages sharing a NIC), the
    others NVLink's. All-reduce: NCCL's pipelined tree (:func:`_pipelined_tree`)."""
    if op == "all_reduce":
        return _pipelined_tree(nbytes, layout, channels)
    phases = {"reduce": (False,), "broadcast": (True,)}[op]
    return sum(
        _hop(layout.inter, nbytes) * busy if crosses else _hop(layout.intra, nbytes)
        for broadcast in phases
        for crosses, busy in _tree_rounds(layout, broadcast)
    )


@cache
def _tree_shape(layout: GroupLayout, channels: int) -> tuple[int, int, int]:
    """Of the channels' trees (:func:`.nccl_tree.shape`): the most hops inside nodes
    and across nodes from a rank up to the root, and the most children a rank has
    across nodes."""
    nvlink, network, fanout = 0, 0, 0
    for c in range(channels):
        parent = nccl_tree.shape(layout.nodes, c, channels)
        across: dict[int, int] = {}
        for r, q in enumerate(parent):
            if q >= 0 and layout.nodes[q] != layout.nodes[r]:
                across[q] = across.get(q, 0) + 1
        fanout = max(fanout, max(across.values(), default=0))
        for r in range(len(parent)):
            inside = outside = 0
            while parent[r] >= 0:
                if layout.nodes[parent[r]] == layout.nodes[r]:
                    inside += 1
                else:
                    outside += 1
                r = parent[r]
            if (inside, outside) > (nvlink, network):
                nvlink, network = inside, outside
    return nvlink, network, fanout


def _pipelined_tree(nbytes: float, layout: GroupLayout, channels: int) -> float:
    """NCCL's tree: ``K`` chunks per channel climb while earlier ones descend. The
    first chunk goes up the deepest path and back down (its hops inside nodes over
    NVLink, across nodes through NICs), and the others follow one step apart, a step
    being the busiest port's load -- every port split between the two ways of every
    channel that uses it, and a head with ``f`` children in other nodes moving ``f``
    chunks through its NIC (on one switch:
    :func:`~simulator.comm.closed_forms.chain_all_reduce`)."""
    p = len(layout)
    if p < 2:
        return 0.0
    nvlink, network, fanout = _tree_shape(layout, channels)
    per_channel = nbytes / channels
    k = nccl_tree.chunk_count(int(per_channel), nvlink + network, layout.intra, channels, p)
    piece = per_channel / k
    inside = _hop(layout.intra, piece, 2 * channels)
    across = _hop(layout.inter, piece, 2)
    step = max(inside if nvlink else 0.0, max(fanout, 1) * across if network else 0.0)
    # the path: a head with two children in other nodes takes its second chunk a hop later
    path = nvlink * inside + (network + max(fanout - 1, 0)) * across
    return (k - 1) * step + 2 * path


def _hierarchical(nbytes: float, layout: GroupLayout) -> float | None:
    """Two rings inside nodes around one ring per local index across nodes; the
    rings across nodes take turns on a NIC their ranks share."""
    groups = layout.node_groups()
    g, n = len(groups[0]), len(groups)
    if any(len(group) != g for group in groups):
        return None
    sharing = max(
        max(sum(1 for r in group if layout.nics[r] == layout.nics[q]) for q in group)
        for group in groups
    )
    inner = 2 * (g - 1) * _hop(layout.intra, nbytes / g)
    across = 2 * (n - 1) * sharing * _hop(layout.inter, nbytes / (g * n))
    return inner + across


def _naive(op: str, nbytes: float, layout: GroupLayout) -> float:
    """The root's two ports (NVLink and NIC) each serve their messages one by one."""
    p = len(layout)
    local = sum(1 for r in range(1, p) if layout.nodes[r] == layout.nodes[0])
    remote = p - 1 - local
    piece = nbytes / p
    sizes = {
        "broadcast": (nbytes,),
        "reduce": (nbytes,),
        "scatter": (piece,),
        "gather": (piece,),
        "all_reduce": (nbytes, nbytes),
        "reduce_scatter": (nbytes, piece),
        "all_gather": (piece, nbytes),
        "all_to_all": (nbytes * (p - 1) / p,) * 2,
    }[op]
    return sum(max(local * _hop(layout.intra, s), remote * _hop(layout.inter, s)) for s in sizes)


def estimate(
    op: str, algorithm: str, nbytes: float, layout: GroupLayout, channels: int = 1
) -> float | None:
    """Estimated seconds of ``op`` with ``algorithm`` on idle links (``None``: the
    algorithm does not fit the layout)."""
    if algorithm == "ring":
        return _ring(op, nbytes, layout, channels)
    if algorithm == "tree":
        return _tree(op, nbytes, layout, channels)
    if algorithm == "hierarchical":
        return _hierarchical(nbytes, layout)
    if algorithm == "naive":
        return _naive(op, nbytes, layout)
    raise ValueError(f"the tuner has no model of {algorithm!r}")


def options(
    op: str, nbytes: float, layout: GroupLayout, channels: int | None = None
) -> list[Choice]:
    """Every candidate for ``op`` with its estimate, cheapest first (ties: the
    order of :data:`CANDIDATES`, which puts the bandwidth-optimal one first).
    A ring runs ``channels`` channels, by default one per NIC its group uses."""
    out = []
    for algorithm in CANDIDATES[op]:
        if op in CHANNELED.get(algorithm, ()) and op not in ("all_to_all", "send_recv"):
            ring_channels = channels or layout.max_channels()
        else:
            ring_channels = 1
        seconds = estimate(op, algorithm, nbytes, layout, ring_channels)
        if seconds is not None:
            out.append(Choice(algorithm, ring_channels, seconds))
    return sorted(out, key=lambda c: c.seconds)


def choose(op: str, nbytes: float, layout: GroupLayout, channels: int | None = None) -> Choice:
    """The cheapest candidate for ``op`` of ``nbytes`` over ``layout``."""
    return options(op, nbytes, layout, channels)[0]
