"""Where a group's ranks sit: nodes, NICs and links, and the rings NCCL builds on them.

A collective's algorithm works on group ranks; how fast it runs depends on
where the ranks are. :class:`GroupLayout` is what an algorithm and the tuner
(:mod:`.tuner`) need to know about that, and nothing else: the node of every
rank, the NIC (rail) every rank leaves its node through, and the two link
classes. :meth:`GroupLayout.of` reads it off a cluster and the group's devices;
on a cluster whose nodes differ it takes the slowest NVLink and the slowest
NIC among the group's nodes (a ring runs at the pace of its slowest hop). That
is what the tuner estimates with; the simulation still times every message
on its own link.

*Rings with channels* (:func:`channel_rings`). NCCL runs a collective as
several channels, each a ring over all ranks carrying its share of the data,
and builds the rings so that each channel crosses from one node to the next
through a different GPU, hence a different NIC (NVIDIA/nccl,
``src/graph/rings.cc`` and ``src/graph/search.cc``: a ring enters and leaves
every node through a network device, and the search picks different NICs for
different channels). Here channel ``c`` visits the nodes in order and, inside
each node, that node's ranks starting from rank ``c k / C`` of its ``k``
ranks, ``C`` being the channels: it enters the node through that rank's NIC
and leaves through the NIC of the rank before it. With one channel per NIC the
inter-node traffic is striped over all NICs, while every NVLink port carries
the same total as one big ring. Inside one node every channel's ring is the
same cycle.

*Which layout applies.* :func:`placed` sets the layout of the group whose
collectives are about to run (the runtime does, around a tensor-parallel
group's layer code, whose collectives name no devices);
:func:`current_layout` returns it to :func:`simulator.comm.collective` when
the sizes match. A group nobody placed is taken to sit on DGX A100 nodes in
order (:meth:`GroupLayout.assumed`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import cache, reduce

from ..hardware import PRESETS, ClusterSpec, LinkSpec, slower

#: The links assumed when a group's devices are unknown: one DGX A100 node.
_REFERENCE = PRESETS["dgx-a100"]


@dataclass(frozen=True)
class GroupLayout:
    """The placement of a group's ranks.

    Attributes:
        nodes: the node of every rank.
        nics: a cluster-wide id of the NIC every rank reaches other nodes
            through (ranks that share a NIC share its bandwidth).
        intra: the link inside a node.
        inter: the link of one NIC.
        known: whether the links are the cluster's (``False``: assumed, see
            :meth:`from_nodes`).
    """

    nodes: tuple[int, ...]
    nics: tuple[int, ...]
    intra: LinkSpec
    inter: LinkSpec
    known: bool = True

    @classmethod
    def of(cls, cluster: ClusterSpec, devices: Sequence[int]) -> GroupLayout:
        """The layout of ``devices`` of ``cluster`` (rank ``r`` on ``devices[r]``); the
        links are the slowest of the group's nodes' (module docstring)."""
        nodes = tuple(cluster.node_of(d) for d in devices)
        intra, inter = cluster.intra_node, cluster.inter_node
        if not cluster.homogeneous:
            kinds = [cluster.node_spec(n) for n in dict.fromkeys(nodes)]
            intra = reduce(slower, (k.intra_node for k in kinds))
            inter = reduce(slower, (k.inter_node for k in kinds))
        return cls(nodes, tuple(cluster.nic_of(d) for d in devices), intra, inter)

    @classmethod
    def from_nodes(cls, nodes: Sequence[int]) -> GroupLayout:
        """A layout from the nodes alone: one NIC per rank and a DGX A100's links."""
        return cls(tuple(nodes), tuple(range(len(nodes))), *_reference_links(), known=False)

    @classmethod
    def assumed(cls, p: int) -> GroupLayout:
        """What a group of ``p`` ranks whose devices are unknown is taken to be:
        consecutive devices of DGX A100 nodes, eight per node (a tensor-parallel
        group of 8 fills a node, one of 16 spans two)."""
        per_node = _REFERENCE.devices_per_node
        return cls.from_nodes(tuple(r // per_node for r in range(p)))

    def __len__(self) -> int:
        return len(self.nodes)

    def relabelled(self) -> GroupLayout:
        """The same layout with nodes and NICs numbered by first appearance.

        Algorithms and the tuner only ask whether two ranks share a node or a
        NIC, so groups at different places of the cluster with the same shape
        relabel to one layout and run their collectives alike.
        """
        return replace(self, nodes=_first_seen(self.nodes), nics=_first_seen(self.nics))

    @property
    def spans_nodes(self) -> bool:
        return len(set(self.nodes)) > 1

    def node_groups(self) -> list[list[int]]:
        """The ranks on each node, nodes in order of first appearance."""
        return _node_groups(self.nodes)

    def max_channels(self) -> int:
        """Channels worth running: across nodes, one per NIC a node's ranks can use
        (more would only split the same NICs); inside one node, one (a channel of
        the simulated model can fill an NVLink port on its own)."""
        if not self.spans_nodes:
            return 1
        return max(len({self.nics[r] for r in group}) for group in self.node_groups())


class Layouts:
    """The relabelled layout (:meth:`GroupLayout.relabelled`) of every group of devices of
    one cluster, worked out once per group: what a group's collectives depend on."""

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        self._known: dict[tuple[int, ...], GroupLayout] = {}

    def __call__(self, devices: tuple[int, ...]) -> GroupLayout:
        layout = self._known.get(devices)
        if layout is None:
            layout = self._known[devices] = GroupLayout.of(self.cluster, devices).relabelled()
        return layout


def _first_seen(ids: tuple[int, ...]) -> tuple[int, ...]:
    order: dict[int, int] = {}
    return tuple(order.setdefault(i, len(order)) for i in ids)


def _reference_links() -> tuple[LinkSpec, LinkSpec]:
    return _REFERENCE.intra_node, _REFERENCE.inter_node


@cache
def _node_groups(nodes: tuple[int, ...]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for rank, node in enumerate(nodes):
        groups.setdefault(node, []).append(rank)
    return list(groups.values())


def channel_rings(layout: GroupLayout | None, p: int, channels: int) -> list[tuple[int, ...]]:
    """The ring order of every channel (see the module docstring); ranks ``0 .. p-1``
    in order when the layout is unknown or there is one channel over one node."""
    if layout is None or (channels == 1 and not layout.spans_nodes):
        return [tuple(range(p))] * channels
    return _rings(layout.nodes, channels)


@cache
def _rings(nodes: tuple[int, ...], channels: int) -> list[tuple[int, ...]]:
    groups = _node_groups(nodes)
    rings = []
    for c in range(channels):
        order: list[int] = []
        for group in groups:
            k = len(group)
            first = c * k // channels
            order += group[first:] + group[:first]
        rings.append(tuple(order))
    return rings


_active: ContextVar[GroupLayout | None] = ContextVar("group_layout", default=None)


@contextlib.contextmanager
def placed(layout: GroupLayout | None) -> Iterator[None]:
    """Collectives inside the block run over ``layout`` unless they say otherwise."""
    token = _active.set(layout)
    try:
        yield
    finally:
        _active.reset(token)


def current_placement() -> GroupLayout | None:
    """The layout set by :func:`placed` (None outside it)."""
    return _active.get()


def current_layout(p: int) -> GroupLayout | None:
    """The layout set by :func:`placed`, if it is one of ``p`` ranks."""
    layout = _active.get()
    return layout if layout is not None and len(layout) == p else None
