"""The roofline cost model: how long a kernel takes on a device.

A kernel that performs ``F`` GEMM FLOPs and moves ``M`` bytes takes

    launch + max(F / (peak[dtype] * eff[class]), M / (memory_bandwidth * eff[class]))

(Williams, Waterman and Patterson 2009, "Roofline: an insightful visual
performance model", sec. 2; the efficiency factors are the achievable fraction
of peak for the op class, see :mod:`simulator.hardware`). A kernel of class
``fixed`` (abstract models) takes exactly its stated seconds. Four effects
refine it on devices that state them (an ideal device states none, and its
kernels take the roofline time exactly):

* **How a GEMM tiles the device** (``DeviceSpec.sms``). A GEMM computes its
  ``m x n`` output in tiles, one thread block per tile, the tiles running in
  waves of one per streaming multiprocessor; a partly filled tile or a last
  wave that leaves multiprocessors idle wastes their share (NVIDIA, "Matrix
  Multiplication Background User's Guide", sections "Tile quantization" and
  "Wave quantization", with cuBLAS's tiles of 256x128, 128x128 and 128x64).
  A GEMM reaches ``efficiency["gemm"]`` times the best of those tiles' useful
  fraction, ``(m n batch) / (tiles tile-size)`` times ``tiles / (waves sms)``:
  the small GEMMs of a large tensor-parallel size or a small micro-batch run
  well below the large ones.
* **The host** (``host_overhead``): the framework launches one kernel at a time
  from Python, and a device cannot run kernels faster than they are launched,
  so no kernel takes less than the host's time per launch.
* **The slowest device** (``jitter``). Devices of one kind differ in speed
  (manufacturing and power management); a step whose devices synchronise --
  through the tensor-parallel collectives of every layer, the pipeline's
  messages, the gradient exchange -- runs at the pace of the slowest of them.
  With ``n`` devices whose speeds vary by ``jitter`` (a coefficient of
  variation), every kernel takes ``1 + jitter E[max of n]`` its time, the
  expected maximum of ``n`` standard normal draws (Blom 1958's approximation,
  ``Phi^-1((n - 0.375) / (n + 0.25))``). The expectation, not one draw: the
  same layout always gives the same step, and identical replicas stay
  identical (:mod:`simulator.runtime.fold`).
* **Compute beside communication** (``overlap_slowdown``). A collective's kernels
  run on the same multiprocessors and memory as the compute beside them, so a
  compute segment that runs while one of its worker's own asynchronous
  collectives is in flight (Megatron-LM's asynchronous tensor-parallel
  all-reduce, the chunks of ``tp_comm_overlap``) progresses at ``1 / (1 + s)``
  of its speed until the collective ends (:func:`overlapped`; Lee et al. 2025,
  arXiv:2507.03114, measure ``s = 0.189`` on average). Data-parallel buckets
  and pipeline messages that run beside compute do not slow it.

A lockstep group (a tensor-parallel worker) whose devices are of different
kinds -- its ranks on an A100 node and an H100 node -- is priced by
:class:`LockstepCost`: every rank on its own device, and the group at the
pace of its slowest rank. :class:`Costs` hands every group its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

from ..hardware import ClusterSpec, DeviceSpec
from ..ops.tape import ComputeSegment, Kernel

#: cuBLAS's GEMM output tiles (NVIDIA, "Matrix Multiplication Background User's Guide").
TILES = ((256, 128), (128, 128), (128, 64))


def expected_max(n: int) -> float:
    """The expected largest of ``n`` standard normal draws (Blom 1958: ``Phi^-1((n -
    0.375) / (n + 0.25))``); 0 for one."""
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n > 1 else 0.0


def tiling(shape: tuple[int, int, int, int], sms: int) -> float:
    """The useful fraction of a GEMM of ``(batch, m, n, k)`` on ``sms`` multiprocessors,
    with the best of :data:`TILES` (module docstring)."""
    batch, m, n, _ = shape
    best = 0.0
    for tm, tn in TILES:
        tiles = batch * math.ceil(m / tm) * math.ceil(n / tn)
        waves = math.ceil(tiles / sms)
        best = max(best, batch * m * n / (waves * sms * tm * tn))
    return best


def overlapped(start: float, seconds: float, busy: float, slowdown: float) -> float:
    """How long a compute segment of ``seconds`` alone takes when it starts at ``start``
    beside communication in flight until ``busy``: it runs at ``1 / (1 + slowdown)`` of
    its speed until then, at full speed after (module docstring)."""
    beside = busy - start
    if beside <= 0.0:
        return seconds
    slow = seconds * (1.0 + slowdown)
    if slow <= beside:
        return slow
    return beside + (seconds - beside / (1.0 + slowdown))


class CostModel:
    """Kernel and segment times on one device type, cached per distinct kernel;
    ``synchronised`` devices of it wait for the slowest (module docstring)."""

    def __init__(self, device: DeviceSpec, synchronised: int = 1) -> None:
        self.device = device
        self.slowdown = 1.0 + device.jitter * expected_max(synchronised)
        #: compute beside its own communication (:func:`overlapped`)
        self.overlap_slowdown = device.overlap_slowdown
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
            compute = 0.0
            if kernel.flops:
                shaped = eff * tiling(kernel.shape, dev.sms) if dev.sms and kernel.shape else eff
                compute = kernel.flops / (dev.peak(kernel.dtype) * shaped)
            memory = kernel.bytes / (dev.memory_bandwidth * eff) if kernel.bytes else 0.0
            seconds = dev.launch_overhead + max(compute, memory)
            seconds = max(seconds, dev.host_overhead) * self.slowdown
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
        #: the group runs at its slowest rank's pace beside communication too
        self.overlap_slowdown = max(r.overlap_slowdown for r in self.ranks)

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

    def __init__(self, cluster: ClusterSpec, synchronised: int = 1) -> None:
        self.cluster = cluster
        self.synchronised = synchronised
        #: node 0's kind (every device's, when the nodes are alike)
        self.default = CostModel(cluster.device, synchronised)
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
                    self._models[kind] = CostModel(kind, self.synchronised)
            models = [self._models[kind] for kind in kinds]
            alike = all(m is models[0] for m in models)
            cost = self._groups[kinds] = models[0] if alike else LockstepCost(models)
        return cost
