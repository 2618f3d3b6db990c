"""A cluster: nodes of devices, the switch inside each node, the NICs between them.

The topology is described in :mod:`simulator.hardware`; the network that
times messages on it is :mod:`simulator.engine.network`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import ScenarioError
from .specs import DeviceSpec, LinkSpec


@dataclass(frozen=True)
class ClusterSpec:
    """Nodes of identical devices; see the module docstring for the topology.

    Attributes:
        intra_node: every device's port into its node's switch.
        inter_node: every NIC's port into the network between nodes.
        nics_per_node: NICs per node; ``None`` means one per device.
    """

    name: str
    nodes: int
    devices_per_node: int
    device: DeviceSpec
    intra_node: LinkSpec
    inter_node: LinkSpec
    nics_per_node: int | None = None

    def __post_init__(self) -> None:
        nics = self.nics_per_node
        if nics is not None and not 1 <= nics <= self.devices_per_node:
            raise ScenarioError(
                f"cluster {self.name!r}: nics_per_node must be 1 to devices_per_node "
                f"({self.devices_per_node}), got {nics}; several devices may share a NIC, "
                "but a device has one"
            )

    @property
    def num_devices(self) -> int:
        return self.nodes * self.devices_per_node

    @property
    def nics(self) -> int:
        """NICs (rails) per node."""
        return self.nics_per_node or self.devices_per_node

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
        """The link class a message from ``src`` to ``dst`` uses (None for itself)."""
        if src == dst:
            return None
        if self.node_of(src) == self.node_of(dst):
            return self.intra_node
        return self.inter_node

    def with_nodes(self, nodes: int) -> ClusterSpec:
        return replace(self, nodes=nodes)

    def with_nics(self, nics: int | None) -> ClusterSpec:
        """The same cluster with ``nics`` NICs per node (``None``: one per device)."""
        return replace(self, nics_per_node=nics)
