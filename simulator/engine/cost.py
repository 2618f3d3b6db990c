"""The roofline cost model: how long a kernel takes on a device.

A kernel that performs ``F`` GEMM FLOPs and moves ``M`` bytes takes

    launch + max(F / (peak[dtype] * eff[class]), M / (memory_bandwidth * eff[class]))

(Williams, Waterman and Patterson 2009, "Roofline: an insightful visual
performance model", sec. 2; the efficiency factors are the achievable fraction
of peak for the op class, see :mod:`simulator.hardware`). A kernel of class
``fixed`` (abstract models) takes exactly its stated seconds.

A lockstep group (a tensor-parallel worker) whose devices are of different
kinds -- its ranks on an A100 node and an H100 node -- is priced by
:class:`LockstepCost`: every rank on its own device, and the group at the
pace of its slowest rank. :class:`Costs` hands every group its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..hardware import ClusterSpec, DeviceSpec
from ..ops.tape import ComputeSegment, Kernel


class CostModel:
    """Kernel and segment times on one device type, cached per distinct kernel."""

    def __init__(self, device: DeviceSpec) -> None:
        self.device = device
        self._cache: dict[Kernel, float] = {}

    def kernel_time(self, kernel: Kernel) -> float:
        """Seconds for one kernel (roofline, see the module docstring)."""
        cached = self._cache.get(kernel)
        if cached is not None:
            return cached
        if kernel.op_class == "fixed":
            seconds = kernel.seconds
        else:
            dev = self.device
            eff = dev.efficiency[kernel.op_class]
            compute = kernel.flops / (dev.peak(kernel.dtype) * eff) if kernel.flops else 0.0
            memory = kernel.bytes / (dev.memory_bandwidth * eff) if kernel.bytes else 0.0
            seconds = dev.launch_overhead + max(compute, memory)
        self._cache[kernel] = seconds
        return seconds

    def segment_time(self, segment: ComputeSegment) -> float:
        """A lockstep segment lasts as long as its slowest tensor-parallel rank."""
        return max(
            (sum(self.kernel_time(k) for k in kernels) for kernels in segment.kernels.values()),
            default=0.0,
        )


class LockstepCost:
    """Segment times of a lockstep group whose ranks sit on different kinds of device.

    Rank ``r``'s kernels take their roofline time on ``ranks[r]``'s device,
    and a segment lasts as long as its slowest rank, as it does on one kind
    of device (:meth:`CostModel.segment_time`): the ranks meet at the next
    collective, so the faster devices wait for the slower one. A
    tensor-parallel group straddling an A100 and an H100 runs at the A100's
    pace.
    """

    def __init__(self, ranks: Sequence[CostModel]) -> None:
        self.ranks = tuple(ranks)

    def segment_time(self, segment: ComputeSegment) -> float:
        ranks = self.ranks
        return max(
            (
                sum(ranks[r].kernel_time(k) for k in kernels)
                for r, kernels in segment.kernels.items()
            ),
            default=0.0,
        )


#: What prices a worker's compute: one kind of device, or a group of several.
Cost = CostModel | LockstepCost


class Costs:
    """What prices each group of devices of one cluster: one :class:`CostModel` per
    kind of device, shared, and a :class:`LockstepCost` for a group over several.

    :meth:`of` returns the same object for the same kinds of device, so work
    priced on a group may be cached by it (an H100 group never reuses what an
    A100 group's tape cost).
    """

    def __init__(self, cluster: ClusterSpec) -> None:
        self.cluster = cluster
        #: node 0's kind (every device's, when the nodes are alike)
        self.default = CostModel(cluster.device)
        self._models: dict[DeviceSpec, CostModel] = {cluster.device: self.default}
        self._groups: dict[tuple[DeviceSpec, ...], Cost] = {}

    def of(self, devices: tuple[int, ...]) -> Cost:
        """The cost of a lockstep group on ``devices`` (rank ``r`` on ``devices[r]``)."""
        cluster = self.cluster
        if cluster.homogeneous:
            return self.default
        kinds = tuple(cluster.device_of(d) for d in devices)
        cost = self._groups.get(kinds)
        if cost is None:
            for kind in kinds:
                if kind not in self._models:
                    self._models[kind] = CostModel(kind)
            models = [self._models[kind] for kind in kinds]
            alike = all(m is models[0] for m in models)
            cost = self._groups[kinds] = models[0] if alike else LockstepCost(models)
        return cost
