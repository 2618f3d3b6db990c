"""Hardware descriptions: devices, links, clusters, and presets from datasheets.

Everything is in SI units (seconds, bytes, FLOP/s, bytes/s). Scenario files use
suffixed units (``peak_tflops``, ``memory_gib``, ``bandwidth_gbs`` ...); the
conversion happens in :mod:`simulator.scenario`.

The cluster model (used by :mod:`simulator.engine.network`):

* a cluster has ``nodes`` nodes of ``devices_per_node`` identical devices;
* inside a node every device has one full-duplex port into a non-blocking
  switch (NVSwitch), described by ``intra_node``;
* between nodes every device has its own network port (one NIC per GPU, as in a
  DGX A100 with 8 x HDR 200 Gb/s) into a non-blocking switch, described by
  ``inter_node``.

Peaks are dense (no structured sparsity); link bandwidth is per direction.
Datasheet figures: NVIDIA A100 Tensor Core GPU datasheet (2021), NVIDIA H100
Tensor Core GPU datasheet (2023), NVIDIA V100 datasheet; InfiniBand HDR
200 Gb/s = 25 GB/s and NDR 400 Gb/s = 50 GB/s per port.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .errors import ScenarioError

GB = 1e9
GiB = 2**30
TFLOPS = 1e12
US = 1e-6

#: Canonical dtype names and their size in bytes.
DTYPE_BYTES: dict[str, int] = {"float64": 8, "float32": 4, "bf16": 2, "fp16": 2}

#: Operation classes with their own achievable-efficiency factor.
OP_CLASSES = ("gemm", "elementwise", "normalization")


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator.

    Attributes:
        name: a label for plots.
        peak_flops: dense peak FLOP/s per dtype name (see :data:`DTYPE_BYTES`).
        memory_bytes: memory capacity.
        memory_bandwidth: bytes/s between memory and the compute units.
        launch_overhead: seconds added to every kernel.
        efficiency: achievable fraction of peak FLOP/s *and* of memory
            bandwidth, per operation class (``gemm``, ``elementwise``,
            ``normalization`` for softmax and layer norm).
    """

    name: str
    peak_flops: dict[str, float]
    memory_bytes: float
    memory_bandwidth: float
    launch_overhead: float = 0.0
    efficiency: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OP_CLASSES, 1.0))

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``."""
        return self.peak_flops[dtype]


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a port into a switch.

    Attributes:
        bandwidth: bytes/s per direction as rated.
        latency: seconds per message (the alpha of the alpha-beta model).
        efficiency: achievable fraction of the rated bandwidth.
    """

    bandwidth: float
    latency: float
    efficiency: float = 1.0

    @property
    def effective_bandwidth(self) -> float:
        """Bandwidth a message actually gets, bytes/s."""
        return self.bandwidth * self.efficiency


@dataclass(frozen=True)
class ClusterSpec:
    """Nodes of identical devices; see the module docstring for the topology."""

    name: str
    nodes: int
    devices_per_node: int
    device: DeviceSpec
    intra_node: LinkSpec
    inter_node: LinkSpec

    @property
    def num_devices(self) -> int:
        return self.nodes * self.devices_per_node

    def node_of(self, device: int) -> int:
        """The node that holds ``device``."""
        return device // self.devices_per_node

    def link_between(self, src: int, dst: int) -> LinkSpec | None:
        """The link class a message from ``src`` to ``dst`` uses (None for itself)."""
        if src == dst:
            return None
        if self.node_of(src) == self.node_of(dst):
            return self.intra_node
        return self.inter_node

    def with_nodes(self, nodes: int) -> ClusterSpec:
        return replace(self, nodes=nodes)


def _peaks(fp64: float, fp32: float, half: float) -> dict[str, float]:
    return {
        "float64": fp64 * TFLOPS,
        "float32": fp32 * TFLOPS,
        "bf16": half * TFLOPS,
        "fp16": half * TFLOPS,
    }


# Achievable fractions for the datasheet presets. GEMMs: large bf16 GEMMs reach
# about 80% of the A100's 312 TFLOP/s in cuBLAS (Megatron-LM SC21, sec. 5.1, reports
# up to 163 TFLOP/s per GPU end to end, 52% of peak, which includes everything
# else). Memory-bound kernels: well-written elementwise kernels reach about 85% of
# HBM bandwidth; softmax and layer norm, which reduce along a row, about 70%
# (Ivanov et al. 2021, "Data Movement Is All You Need", sec. 4, table 3).
_DATACENTER_EFFICIENCY = {"gemm": 0.8, "elementwise": 0.85, "normalization": 0.7}

A100_80GB = DeviceSpec(
    name="A100-SXM4-80GB",
    peak_flops=_peaks(19.5, 19.5, 312),
    memory_bytes=80 * GiB,
    memory_bandwidth=2039 * GB,
    launch_overhead=4 * US,
    efficiency=_DATACENTER_EFFICIENCY,
)
H100_SXM = DeviceSpec(
    name="H100-SXM5-80GB",
    peak_flops=_peaks(67, 67, 989),
    memory_bytes=80 * GiB,
    memory_bandwidth=3350 * GB,
    launch_overhead=4 * US,
    efficiency=_DATACENTER_EFFICIENCY,
)
V100_32GB = DeviceSpec(
    name="V100-SXM2-32GB",
    peak_flops=_peaks(7.8, 15.7, 125),
    memory_bytes=32 * GiB,
    memory_bandwidth=900 * GB,
    launch_overhead=5 * US,
    efficiency=_DATACENTER_EFFICIENCY,
)
#: A made-up modest device: round numbers, every dtype at the same peak, so that
#: timelines of small float64 models are easy to read.
TOY_DEVICE = DeviceSpec(
    name="toy",
    peak_flops=dict.fromkeys(DTYPE_BYTES, 1 * TFLOPS),
    memory_bytes=4 * GiB,
    memory_bandwidth=200 * GB,
    launch_overhead=2 * US,
)

# NVLink 3 (A100): 300 GB/s per direction per GPU through NVSwitch; measured
# point-to-point throughput is about 195 GB/s, hence 0.65. InfiniBand: nccl-tests
# bus bandwidth reaches about 90% of the port rate.
NVLINK3 = LinkSpec(bandwidth=300 * GB, latency=3 * US, efficiency=0.65)
NVLINK4 = LinkSpec(bandwidth=450 * GB, latency=3 * US, efficiency=0.65)
NVLINK2 = LinkSpec(bandwidth=150 * GB, latency=3 * US, efficiency=0.65)
HDR_200 = LinkSpec(bandwidth=25 * GB, latency=8 * US, efficiency=0.9)
NDR_400 = LinkSpec(bandwidth=50 * GB, latency=8 * US, efficiency=0.9)

PRESETS: dict[str, ClusterSpec] = {
    "toy": ClusterSpec(
        "toy", 1, 4, TOY_DEVICE, LinkSpec(25 * GB, 5 * US), LinkSpec(5 * GB, 10 * US)
    ),
    "a100-node": ClusterSpec("a100-node", 1, 8, A100_80GB, NVLINK3, HDR_200),
    "dgx-a100": ClusterSpec("dgx-a100", 1, 8, A100_80GB, NVLINK3, HDR_200),
    "h100-node": ClusterSpec("h100-node", 1, 8, H100_SXM, NVLINK4, NDR_400),
    "dgx-h100": ClusterSpec("dgx-h100", 1, 8, H100_SXM, NVLINK4, NDR_400),
    "v100-node": ClusterSpec("v100-node", 1, 8, V100_32GB, NVLINK2, HDR_200),
}


def preset(name: str, nodes: int | None = None) -> ClusterSpec:
    """A copy of the preset ``name``, optionally with ``nodes`` nodes."""
    if name not in PRESETS:
        raise ScenarioError(f"unknown cluster preset {name!r}; choose one of: {', '.join(PRESETS)}")
    spec = PRESETS[name]
    if nodes is not None:
        if nodes < 1:
            raise ScenarioError(f"cluster nodes must be at least 1, got {nodes}")
        spec = spec.with_nodes(nodes)
    return spec


def single_switch(devices: int, bandwidth: float, latency: float) -> ClusterSpec:
    """``devices`` ideal devices on one switch with ports of the given link.

    Used by the ``collective`` command: every message takes exactly
    ``latency + bytes / bandwidth`` when its two ports are free.
    """
    link = LinkSpec(bandwidth, latency)
    device = replace(TOY_DEVICE, name="ideal", launch_overhead=0.0, memory_bytes=math.inf)
    return ClusterSpec("switch", 1, devices, device, link, link)
