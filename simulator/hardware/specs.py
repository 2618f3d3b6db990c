"""Devices and links: what one accelerator and one port into a switch can do.

Everything is in SI units (seconds, bytes, FLOP/s, bytes/s); scenario files
use suffixed units, converted in :mod:`simulator.scenario.parse`. Peaks are dense
(no structured sparsity); link bandwidth is per direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

GB = 1e9
GiB = 2**30
TFLOPS = 1e12
US = 1e-6

#: Canonical dtype names and their size in bytes (``fp8``: the GEMM inputs of FP8
#: training, :mod:`simulator.ops.precision`).
DTYPE_BYTES: dict[str, int] = {"float64": 8, "float32": 4, "bf16": 2, "fp16": 2, "fp8": 1}

#: Operation classes with their own achievable-efficiency factor (``attention``: a
#: fused FlashAttention kernel, :mod:`simulator.ops.flash`).
OP_CLASSES = ("gemm", "elementwise", "normalization", "attention")


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
            ``normalization`` for softmax and layer norm, ``attention`` for a
            fused attention kernel; a class left out is ``gemm``'s for
            ``attention``, whose work is two GEMMs, else 1). For ``gemm`` the
            best a large GEMM reaches: smaller ones lose to how they tile.
        sms: streaming multiprocessors, over which a GEMM's output tiles run in
            waves (0: no tiling, every GEMM at ``efficiency["gemm"]``).
        host_overhead: seconds the host needs to launch a kernel: a kernel
            shorter than that leaves the device waiting for the next one.
        jitter: the coefficient of variation of a device's speed among devices
            of one kind; a step waits for the slowest of the devices it runs on
            (:mod:`simulator.engine.cost`). 0 for an ideal device.
        overlap_slowdown: how much slower compute runs while a collective of its own
            runs alongside it (communication kernels take multiprocessors and memory
            bandwidth): a segment progresses at ``1 / (1 + overlap_slowdown)`` of its
            speed while one is in flight (:func:`simulator.engine.cost.overlapped`).
            0 for an ideal device.

    A device without an ``fp8`` peak has no FP8 tensor cores (A100, V100).
    """

    name: str
    peak_flops: dict[str, float]
    memory_bytes: float
    memory_bandwidth: float
    launch_overhead: float = 0.0
    efficiency: dict[str, float] = field(default_factory=lambda: dict.fromkeys(OP_CLASSES, 1.0))
    sms: int = 0
    host_overhead: float = 0.0
    jitter: float = 0.0
    overlap_slowdown: float = 0.0

    def __post_init__(self) -> None:
        missing = [c for c in OP_CLASSES if c not in self.efficiency]
        if missing:
            filled = dict(self.efficiency)
            for c in missing:
                filled[c] = filled.get("gemm", 1.0) if c == "attention" else 1.0
            object.__setattr__(self, "efficiency", filled)

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``."""
        return self.peak_flops[dtype]

    def __hash__(self) -> int:
        # the generated hash would hash the dicts; equal specs must hash alike, so that
        # work priced on one kind of device can be looked up by the device
        return hash(
            (
                self.name,
                self.memory_bytes,
                self.memory_bandwidth,
                self.launch_overhead,
                tuple(sorted(self.peak_flops.items())),
                tuple(sorted(self.efficiency.items())),
                self.sms,
                self.host_overhead,
                self.jitter,
                self.overlap_slowdown,
            )
        )


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


def slower(a: LinkSpec, b: LinkSpec) -> LinkSpec:
    """The link a message gets between a port of kind ``a`` and one of kind ``b``.

    A message leaves through one port and enters through the other, so it
    moves no faster than the slower of the two (the switches between them
    never block, :mod:`simulator.engine.network`): it gets the lower
    effective bandwidth and the higher latency. ``a`` itself when both are
    alike, so a cluster of one kind of node times every message exactly as
    before.
    """
    if a == b:
        return a
    slow = a if a.effective_bandwidth <= b.effective_bandwidth else b
    return replace(slow, latency=max(a.latency, b.latency))


@dataclass(frozen=True)
class NodeSpec:
    """One kind of node: its devices, their ports into its switch, its NICs' ports.

    Attributes:
        device: every device of the node.
        intra_node: every device's port into the node's switch (NVLink).
        inter_node: every NIC's port into the network between nodes.
    """

    device: DeviceSpec
    intra_node: LinkSpec
    inter_node: LinkSpec
