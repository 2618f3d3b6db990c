"""Hardware descriptions: devices, links, clusters, and presets from datasheets.

Everything is in SI units (seconds, bytes, FLOP/s, bytes/s). Scenario files use
suffixed units (``peak_tflops``, ``memory_gib``, ``bandwidth_gbs`` ...); the
conversion happens in :mod:`simulator.scenario.parse`.

The cluster model (used by :mod:`simulator.engine.network`):

* a cluster has ``nodes`` nodes of ``devices_per_node`` identical devices
  (or nodes of several kinds, each with its own devices and links:
  :mod:`.cluster`);
* inside a node every device has one full-duplex port into a non-blocking
  switch (NVSwitch), described by ``intra_node``;
* between nodes, traffic leaves through the node's network adapters (NICs,
  also called *rails*), each a full-duplex port into a non-blocking network
  described by ``inter_node``. A node has ``nics_per_node`` of them (by
  default one per device, as a DGX A100 has 8 x HDR 200 Gb/s for its 8 GPUs)
  and device ``g`` of a node sends and receives through NIC
  ``g * nics // devices_per_node``: with 4 NICs for 8 GPUs, GPUs 0 and 1 share
  NIC 0 and share its bandwidth.

Peaks are dense (no structured sparsity); link bandwidth is per direction.

The package: :mod:`.specs` (devices and links), :mod:`.cluster` (the
cluster), :mod:`.presets` (datasheet figures and the calibrated achievable
fractions).
"""

from .cluster import ClusterSpec
from .presets import (
    A100_80GB,
    B200,
    H100_SXM,
    H200_SXM,
    HDR_200,
    NDR_400,
    NVLINK2,
    NVLINK3,
    NVLINK4,
    NVLINK5,
    PRESETS,
    TOY_DEVICE,
    V100_32GB,
    cluster_of,
    preset,
    single_switch,
)
from .specs import (
    DTYPE_BYTES,
    GB,
    OP_CLASSES,
    TFLOPS,
    US,
    DeviceSpec,
    GiB,
    LinkSpec,
    NodeSpec,
    slower,
)

__all__ = [
    "A100_80GB",
    "B200",
    "DTYPE_BYTES",
    "GB",
    "H100_SXM",
    "H200_SXM",
    "HDR_200",
    "NDR_400",
    "NVLINK2",
    "NVLINK3",
    "NVLINK4",
    "NVLINK5",
    "OP_CLASSES",
    "PRESETS",
    "TFLOPS",
    "TOY_DEVICE",
    "US",
    "V100_32GB",
    "ClusterSpec",
    "DeviceSpec",
    "GiB",
    "LinkSpec",
    "NodeSpec",
    "cluster_of",
    "preset",
    "single_switch",
    "slower",
]
