"""A cluster: nodes of devices, the switch inside each node, the NICs between them.

The topology is described in :mod:`simulator.hardware`; the network that
times messages on it is :mod:`simulator.engine.network`.

*Nodes of several kinds.* A cluster may mix nodes, say two DGX A100 and two
DGX H100 nodes (:meth:`ClusterSpec.of_nodes`). Each node then has its own
devices, its own NVLink ports and its own NICs (:meth:`ClusterSpec.node_spec`);
a message between two nodes moves at the slower end's speed
(:func:`~simulator.hardware.specs.slower`). What every node shares is its
shape: ``devices_per_node`` devices and ``nics_per_node`` NICs, because the
device mesh and the NIC layout count devices the same way in every node
(device ``d`` sits in node ``d // devices_per_node``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import pairwise

from ..errors import ScenarioError
from .specs import DeviceSpec, LinkSpec, NodeSpec, slower


@dataclass(frozen=True)
class ClusterSpec:
    """Nodes of devices; see the module docstring and :mod:`simulator.hardware`.

    ``device``, ``intra_node`` and ``inter_node`` describe node 0, and every
    node when ``later_nodes`` is empty. ``later_nodes`` says where the nodes
    change kind: ``(first node, spec)`` pairs in increasing order, each kind
    lasting until the next one starts (or the last node).

    Attributes:
        device: the devices of node 0 (:meth:`device_of` for any device).
        intra_node: node 0's ports into its switch (:meth:`link_between`).
        inter_node: node 0's NIC ports into the network between nodes.
        nics_per_node: NICs per node; ``None`` means one per device.
        later_nodes: the kinds of the nodes after node 0's run, if they differ.
    """

    name: str
    nodes: int
    devices_per_node: int
    device: DeviceSpec
    intra_node: LinkSpec
    inter_node: LinkSpec
    nics_per_node: int | None = None
    later_nodes: tuple[tuple[int, NodeSpec], ...] = ()

    def __post_init__(self) -> None:
        nics = self.nics_per_node
        if nics is not None and not 1 <= nics <= self.devices_per_node:
            raise ScenarioError(
                f"cluster {self.name!r}: nics_per_node must be 1 to devices_per_node "
                f"({self.devices_per_node}), got {nics}; several devices may share a NIC, "
                "but a device has one"
            )
        starts = [s for s, _ in self.later_nodes]
        if starts and not (starts[0] > 0 and all(a < b for a, b in pairwise(starts))):
            raise ScenarioError(
                f"cluster {self.name!r}: later_nodes must start at increasing nodes after "
                f"node 0, got {starts}"
            )
        if starts and starts[-1] >= self.nodes:
            raise ScenarioError(
                f"cluster {self.name!r} has {self.nodes} nodes, but a kind of node starts at "
                f"node {starts[-1]}"
            )

    @classmethod
    def of_nodes(
        cls,
        name: str,
        runs: Sequence[tuple[NodeSpec, int]],
        devices_per_node: int,
        nics_per_node: int | None = None,
    ) -> ClusterSpec:
        """``count`` consecutive nodes of each kind, in order.

        Neighbouring runs of the same hardware merge, so a list whose nodes
        are all alike gives the cluster one kind of node would.
        """
        if not runs:
            raise ScenarioError(f"cluster {name!r} needs at least one node")
        merged: list[list] = []
        for spec, count in runs:
            if count < 1:
                raise ScenarioError(f"cluster {name!r}: node count must be at least 1, got {count}")
            if merged and merged[-1][0] == spec:
                merged[-1][1] += count
            else:
                merged.append([spec, count])
        later, start = [], merged[0][1]
        for spec, count in merged[1:]:
            later.append((start, spec))
            start += count
        first = merged[0][0]
        return cls(name, start, devices_per_node, first.device, first.intra_node,
                   first.inter_node, nics_per_node, tuple(later))  # fmt: skip

    @property
    def num_devices(self) -> int:
        return self.nodes * self.devices_per_node

    @property
    def nics(self) -> int:
        """NICs (rails) per node."""
        return self.nics_per_node or self.devices_per_node

    # -- kinds of node -----------------------------------------------------------------
    @cached_property
    def _first(self) -> NodeSpec:
        return NodeSpec(self.device, self.intra_node, self.inter_node)

    @cached_property
    def _starts(self) -> list[int]:
        return [s for s, _ in self.later_nodes]

    @cached_property
    def homogeneous(self) -> bool:
        """Whether every node is of node 0's kind."""
        return all(spec == self._first for _, spec in self.later_nodes)

    def node_spec(self, node: int) -> NodeSpec:
        """What node ``node`` is made of."""
        later = self.later_nodes
        if not later or node < later[0][0]:
            return self._first
        return later[bisect_right(self._starts, node) - 1][1]

    def device_of(self, device: int) -> DeviceSpec:
        """The kind of device ``device`` is."""
        if not self.later_nodes:
            return self.device
        return self.node_spec(self.node_of(device)).device

    def kinds(self) -> list[tuple[range, NodeSpec]]:
        """The runs of consecutive nodes of one kind, in order."""
        starts = [0, *self._starts]
        ends = [*self._starts, self.nodes]
        specs = [self._first, *(spec for _, spec in self.later_nodes)]
        return [(range(a, b), spec) for a, b, spec in zip(starts, ends, specs, strict=True)]

    @property
    def smallest_memory(self) -> float:
        """The memory of the smallest device, bytes."""
        return min(spec.device.memory_bytes for _, spec in self.kinds())

    def describe(self) -> str:
        """``4 x 8 A100-SXM4-80GB``, or ``2 x 8 A100-SXM4-80GB + 2 x 8 H100-SXM5-80GB``."""
        per = self.devices_per_node
        return " + ".join(f"{len(r)} x {per} {spec.device.name}" for r, spec in self.kinds())

    def with_every_node(self, change: Callable[[NodeSpec], NodeSpec]) -> ClusterSpec:
        """The cluster with ``change`` applied to every kind of node."""
        first = change(self._first)
        later = tuple((s, change(spec)) for s, spec in self.later_nodes)
        return replace(self, device=first.device, intra_node=first.intra_node,
                       inter_node=first.inter_node, later_nodes=later)  # fmt: skip

    # -- where devices sit -------------------------------------------------------------
    def node_of(self, device: int) -> int:
        """The node that holds ``device``."""
        return device // self.devices_per_node

    def nic_of(self, device: int) -> int:
        """The cluster-wide index of the NIC ``device`` reaches other nodes through:
        device ``g`` of node ``n`` uses NIC ``g * nics // devices_per_node`` of that
        node, so neighbouring devices share a NIC when there are fewer NICs."""
        node, local = divmod(device, self.devices_per_node)
        return node * self.nics + local * self.nics // self.devices_per_node

    def nic_lead(self, nic: int) -> int:
        """The first device that uses NIC ``nic`` (its ports carry the NIC's traffic)."""
        node, k = divmod(nic, self.nics)
        return node * self.devices_per_node + -(-k * self.devices_per_node // self.nics)

    def link_between(self, src: int, dst: int) -> LinkSpec | None:
        """The link a message from ``src`` to ``dst`` gets (None for itself): the
        NVLink of their node, or between nodes the slower of their NICs."""
        if src == dst:
            return None
        a, b = self.node_of(src), self.node_of(dst)
        if a == b:
            return self.node_spec(a).intra_node
        return slower(self.node_spec(a).inter_node, self.node_spec(b).inter_node)

    def with_nodes(self, nodes: int) -> ClusterSpec:
        return replace(self, nodes=nodes)

    def with_nics(self, nics: int | None) -> ClusterSpec:
        """The same cluster with ``nics`` NICs per node (``None``: one per device)."""
        return replace(self, nics_per_node=nics)
