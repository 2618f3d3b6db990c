"""Presets: datasheet devices, links and nodes, and the calibrated achievable fractions.

Datasheet figures (dense peaks, no sparsity): NVIDIA A100 Tensor Core GPU
datasheet (2021), NVIDIA H100 Tensor Core GPU datasheet (2023: H100 SXM BF16
989 and FP8 1,979 TFLOP/s), NVIDIA H200 Tensor Core GPU datasheet (2024: the
H100's compute, 141 GB of HBM3e at 4.8 TB/s, NVLink 900 GB/s both ways),
NVIDIA HGX/DGX B200 datasheets and the Blackwell architecture technical brief
(2024: B200 at 1,000 W, BF16 2.25 and FP8 4.5 PFLOP/s dense, FP64 40 and FP32
80 TFLOP/s; HBM3e at 8 TB/s; fifth-generation NVLink, 1.8 TB/s per GPU both
ways, so 900 GB/s per direction), NVIDIA V100 datasheet, and the NVIDIA DGX
A100, H100, H200 and B200 user guides (8 ConnectX-6 HDR 200 Gb/s compute
adapters per DGX A100 node, 8 ConnectX-7 NDR 400 Gb/s per DGX H100, H200 and
B200 node; the DGX B200 has 1,440 GB of GPU memory, 180 GB per B200).
InfiniBand HDR 200 Gb/s = 25 GB/s and NDR 400 Gb/s = 50 GB/s per port. As for
the 80 GB parts, the datasheets' "GB" of GPU memory are counted in GiB.

*FP8.* A100 and V100 have no FP8 tensor cores: their devices list no ``fp8``
peak, and a strategy with ``precision = "fp8"`` is refused on them. FP8 GEMMs
are priced at the same achievable fraction as BF16 GEMMs.

*Fused attention.* The ``attention`` efficiency is the fraction of the BF16
peak that a FlashAttention kernel reaches, forward and backward, counted as
its papers count FLOPs (the causal half skipped, the backward 2.5 forwards):
the kernel's FLOPs divided by it give its measured time.

* A100: 0.58. FlashAttention-2, forward and backward, causal, head dimension
  128, 8k tokens: 182 TFLOP/s of 312 (Dao 2023, "FlashAttention-2", fig. 6d).
* H100 and H200: 0.53. cuDNN's fused attention, which Transformer Engine
  calls in Megatron-Core: 529 TFLOP/s forward (causal, head dimension 128,
  8k tokens) and 518 backward, of 989 (Shah et al. 2024, "FlashAttention-3",
  figs. 5d and 6; FlashAttention-3 itself reaches 602 and 559).
* B200: 0.55. FlashAttention-4 reaches 1,613 TFLOP/s, 71% of the BF16 peak,
  1.3 times cuDNN 9.13 (Zadouri et al. 2026, "FlashAttention-4", abstract):
  cuDNN at about 1,240 TFLOP/s of 2,250.

*Achievable fractions.* A datasheet gives line rates; what a collective gets
is less, by protocol overheads the datasheets do not state. These factors
(``LinkSpec.efficiency``) are the only calibrated numbers here, each fitted to
a published measurement and named where it is set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from numbers import Integral

from ..errors import ConfigError, ScenarioError
from .cluster import ClusterSpec
from .specs import DTYPE_BYTES, GB, TFLOPS, US, DeviceSpec, GiB, LinkSpec, NodeSpec


def _peaks(fp64: float, fp32: float, half: float, fp8: float | None = None) -> dict[str, float]:
    peaks = {
        "float64": fp64 * TFLOPS,
        "float32": fp32 * TFLOPS,
        "bf16": half * TFLOPS,
        "fp16": half * TFLOPS,
    }
    if fp8 is not None:
        peaks["fp8"] = fp8 * TFLOPS
    return peaks


# Achievable fractions for the datasheet presets. GEMMs: the best a large bf16 GEMM
# reaches, measured by a search over shapes (Bekman, "Machine Learning Engineering",
# compute/accelerator, "Maximum Achievable Matmul FLOPS comparison table": A100 SXM
# 267.9 of 312 TFLOP/s with CUDA 12.1, 0.86; H100 SXM 792.1 to 794.5 of 989, 0.80,
# "H200 is the same"; B200 1,745 of 2,250, 0.78); a smaller GEMM loses more to how its
# tiles fill the streaming multiprocessors (``sms``, :mod:`simulator.engine.cost`).
# V100 has no such measurement and keeps the generic 0.8. Memory-bound kernels:
# well-written elementwise kernels reach about 85% of HBM bandwidth; softmax and
# layer norm, which reduce along a row, about 70% (Ivanov et al. 2021, "Data
# Movement Is All You Need", sec. 4, table 3).
_DATACENTER_EFFICIENCY = {"gemm": 0.8, "elementwise": 0.85, "normalization": 0.7}


def _efficiency(gemm: float, attention: float) -> dict[str, float]:
    """The datacenter fractions with a device's GEMM ceiling and fused attention
    kernel's (module docstring)."""
    return {**_DATACENTER_EFFICIENCY, "gemm": gemm, "attention": attention}


# Streaming multiprocessors per device (NVIDIA A100 and H100 Tensor Core GPU
# architecture whitepapers: 108 on A100, 132 on H100 SXM5 and H200; the V100
# whitepaper: 80; the Blackwell technical brief: 148 on B200).
#
# Device-to-device speed (``jitter``): devices of one SKU differ in sustained speed
# by manufacturing and power management. Sinha et al. 2022 ("Not All GPUs Are
# Created Equal", SC22) measure 8% average performance variation (max 22%) over
# more than 90% of the GPUs of five clusters, with outliers up to 1.5x slower than
# the median; Bekman (ibid., "Not all accelerators are created equal") reports 5%
# and more between the GPUs of one 8-GPU node. Read as the expected range of 8
# normal draws (2.85 standard deviations), 5% is a coefficient of variation of
# 0.0175, taken here for every datacenter device; a step waits for its slowest
# device (:mod:`simulator.engine.cost`).
JITTER = 0.0175

# Compute alongside communication (``overlap_slowdown``): a collective's kernels run
# on the multiprocessors and the memory bandwidth the compute kernels beside them
# would use. Lee et al. 2025 ("Characterizing Compute-Communication Overlap in
# GPU-Accelerated Distributed Deep Learning: Performance and Power Implications",
# arXiv:2507.03114, abstract) measure compute kernels 18.9% slower on
# average (40% at most) while a collective runs beside them, over GPT and Llama
# training on four A100s, H100s, MI250s and MI210s (:func:`simulator.engine.cost.overlapped`).
# Measured on the calibration runs (``megatron_calibration.py --with overlap-slowdown``,
# docs/accuracy.md) but not yet set on the presets: a scenario turns it on with
# ``[cluster.device] overlap_slowdown``.
OVERLAP_SLOWDOWN = 0.189


A100_80GB = DeviceSpec(
    name="A100-SXM4-80GB",
    peak_flops=_peaks(19.5, 19.5, 312),
    memory_bytes=80 * GiB,
    memory_bandwidth=2039 * GB,
    launch_overhead=4 * US,
    efficiency=_efficiency(0.86, 0.58),
    sms=108,
    jitter=JITTER,
)
H100_SXM = DeviceSpec(
    name="H100-SXM5-80GB",
    peak_flops=_peaks(67, 67, 989, fp8=1979),
    memory_bytes=80 * GiB,
    memory_bandwidth=3350 * GB,
    launch_overhead=4 * US,
    efficiency=_efficiency(0.80, 0.53),
    sms=132,
    jitter=JITTER,
)
H200_SXM = DeviceSpec(
    name="H200-SXM5-141GB",
    peak_flops=_peaks(67, 67, 989, fp8=1979),
    memory_bytes=141 * GiB,
    memory_bandwidth=4800 * GB,
    launch_overhead=4 * US,
    efficiency=_efficiency(0.80, 0.53),
    sms=132,
    jitter=JITTER,
)
B200 = DeviceSpec(
    name="B200-180GB",
    peak_flops=_peaks(40, 80, 2250, fp8=4500),
    memory_bytes=180 * GiB,
    memory_bandwidth=8000 * GB,
    launch_overhead=4 * US,
    efficiency=_efficiency(0.78, 0.55),
    sms=148,
    jitter=JITTER,
)
V100_32GB = DeviceSpec(
    name="V100-SXM2-32GB",
    peak_flops=_peaks(7.8, 15.7, 125),
    memory_bytes=32 * GiB,
    memory_bandwidth=900 * GB,
    launch_overhead=5 * US,
    efficiency=_DATACENTER_EFFICIENCY,
    sms=80,
    jitter=JITTER,
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

# Calibrated: the achievable fraction of each link's line rate (module docstring).
# NVLink carries packet headers and flow control, so NCCL counts on about 80% of
# the line rate ("app-level bandwidth is 80% of the peak", NVIDIA/nccl issue
# #1054, which is why NCCL's topology code rates an NVLink 3 link at 20 of its 25
# GB/s). Measured ring all-reduce bus bandwidth, which approaches the effective
# link bandwidth for large messages, pins the factor per generation: 8 x A100
# over NVSwitch reach about 200 to 235 GB/s of 300 (nccl-tests issue #149 reports
# about 200 GB/s), so 0.78 (ring busbw 230 GB/s for 1 GB); 8 x H100 reach 370
# GB/s of 450 with NCCL_ALGO=RING (NVIDIA/nccl-tests issue #212, NCCL maintainer),
# so 0.82. V100 NVLink 2 gets NCCL's generic 0.8. InfiniBand: NVIDIA measures a
# ring all-reduce bus bandwidth of 192 GB/s over 2 and 4 DGX A100 nodes, 24 GB/s
# through each of the 8 HDR NICs, 0.96 of 25 GB/s (an RDMA message carries about
# 2% headers at a 4 KiB MTU; the rest is flow control). The latencies are
# NCCL's per-hop figures for its Simple protocol (src/graph/tuning.cc,
# hwLatencies: about 3 us over NVLink, 8 us over the network). NVLink 5 (B200):
# NCCL's topology code rates a B200 NVLink at 40.1 of its 50 GB/s
# (src/graph/topo.h, SM100_NVLINK_BW; NVIDIA/nccl issue #1807, "maxBw 721.8" for
# 18 links), so 0.80.
NVLINK3 = LinkSpec(bandwidth=300 * GB, latency=3 * US, efficiency=0.78)
NVLINK4 = LinkSpec(bandwidth=450 * GB, latency=3 * US, efficiency=0.82)
NVLINK5 = LinkSpec(bandwidth=900 * GB, latency=3 * US, efficiency=0.80)
NVLINK2 = LinkSpec(bandwidth=150 * GB, latency=3 * US, efficiency=0.8)
HDR_200 = LinkSpec(bandwidth=25 * GB, latency=8 * US, efficiency=0.96)
NDR_400 = LinkSpec(bandwidth=50 * GB, latency=8 * US, efficiency=0.96)

#: ``nics_per_node`` is left at one per device: a DGX A100 has 8 HDR NICs for its 8
#: GPUs, a DGX H100, H200 or B200 8 NDR NICs (and a scenario that changes
#: ``devices_per_node`` keeps one per device).
PRESETS: dict[str, ClusterSpec] = {
    "toy": ClusterSpec(
        "toy", 1, 4, TOY_DEVICE, LinkSpec(25 * GB, 5 * US), LinkSpec(5 * GB, 10 * US)
    ),
    "a100-node": ClusterSpec("a100-node", 1, 8, A100_80GB, NVLINK3, HDR_200),
    "dgx-a100": ClusterSpec("dgx-a100", 1, 8, A100_80GB, NVLINK3, HDR_200),
    "h100-node": ClusterSpec("h100-node", 1, 8, H100_SXM, NVLINK4, NDR_400),
    "dgx-h100": ClusterSpec("dgx-h100", 1, 8, H100_SXM, NVLINK4, NDR_400),
    "h200-node": ClusterSpec("h200-node", 1, 8, H200_SXM, NVLINK4, NDR_400),
    "dgx-h200": ClusterSpec("dgx-h200", 1, 8, H200_SXM, NVLINK4, NDR_400),
    "dgx-b200": ClusterSpec("dgx-b200", 1, 8, B200, NVLINK5, NDR_400),
    "v100-node": ClusterSpec("v100-node", 1, 8, V100_32GB, NVLINK2, HDR_200),
}


def preset(name: str, nodes: int | None = None) -> ClusterSpec:
    """A copy of the preset ``name``, optionally with ``nodes`` nodes."""
    if name not in PRESETS:
        raise ScenarioError(f"unknown cluster preset {name!r}; choose one of: {', '.join(PRESETS)}")
    spec = PRESETS[name]
    if nodes is not None:
        if isinstance(nodes, bool) or not isinstance(nodes, Integral) or nodes < 1:
            raise ConfigError(
                f"preset(): nodes must be a whole number of nodes, at least 1, got {nodes!r}",
                "nodes",
                "an integer >= 1",
            )
        spec = spec.with_nodes(int(nodes))
    return spec


def cluster_of(
    runs: Sequence[tuple[str | ClusterSpec, int]],
    devices_per_node: int | None = None,
    nics_per_node: int | None = None,
) -> ClusterSpec:
    """``count`` consecutive nodes of each preset (a name or a cluster's node 0), in
    order: ``cluster_of([("dgx-a100", 2), ("dgx-h100", 2)])``.

    Every node has the same number of devices and of NICs (:mod:`.cluster`
    says why): the presets' own when they agree, else the ``devices_per_node``
    and ``nics_per_node`` given for all of them.
    """
    specs = [(preset(p) if isinstance(p, str) else p, count) for p, count in runs]
    shape = {}
    for key, given in (("devices_per_node", devices_per_node), ("nics_per_node", nics_per_node)):
        if given is not None:
            shape[key] = given
            continue
        values = {c.name: getattr(c, key) for c, _ in specs}
        if len(set(values.values())) > 1:
            each = ", ".join(f"{name} has {v or 'one per device'}" for name, v in values.items())
            raise ScenarioError(
                f"the nodes of one cluster must have the same {key} (the device mesh and "
                f"the NIC layout count devices alike in every node): {each}; set "
                f"{key} for all of them"
            )
        shape[key] = next(iter(values.values()), None)
    nodes = [(NodeSpec(c.device, c.intra_node, c.inter_node), count) for c, count in specs]
    names = list(dict.fromkeys(c.name for c, _ in specs))
    name = " + ".join(f"{count} x {c.name}" for c, count in specs)
    cluster = ClusterSpec.of_nodes(name, nodes, shape["devices_per_node"], shape["nics_per_node"])
    return replace(cluster, name=names[0]) if cluster.homogeneous and len(names) == 1 else cluster


def single_switch(devices: int, bandwidth: float, latency: float) -> ClusterSpec:
    """``devices`` ideal devices on one switch with ports of the given link.

    Used by the ``collective`` command: every message takes exactly
    ``latency + bytes / bandwidth`` when its two ports are free.
    """
    link = LinkSpec(bandwidth, latency)
    device = replace(TOY_DEVICE, name="ideal", launch_overhead=0.0, memory_bytes=math.inf)
    return ClusterSpec("switch", 1, devices, device, link, link)
