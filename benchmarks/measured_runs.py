"""Measured training steps of real Megatron runs, and how to replay each one.

Every run is a published measurement of one training step (an iteration time,
or a throughput that converts to one) with the layout its authors give. The
runs come in *families*, one per software stack and era, because that is how
a simulator's error moves: within a family the same kernels, the same
collectives and the same schedule run at different sizes, and a bias shows as
a signed error that moves with size. :mod:`megatron_calibration` scores
every family and cross-validates by leaving one family out at a time.

Families (sources in :data:`SOURCES`):

* ``vTrain`` -- 108 Megatron-LM GPT runs on 64 to 512 A100s (Bang et al.
  2024), iteration times as measured (``data/README.md``);
* ``Korthikanti`` -- Korthikanti et al. 2022, Table 5 (with their Table 3's
  layouts): 22B to 1T on 8 to 512 A100s, full recomputation and sequence
  parallelism with selective recomputation;
* ``Megatron-LM at scale`` -- Narayanan et al. 2021, Table 1 (1.7B to 1T on 32
  to 3072 A100s, achieved TFLOP/s per GPU) and the Megatron-LM baseline of
  Jiang et al. 2024 (MegaScale), Table 2 (GPT-3 175B on 256 to 12,288 GPUs,
  MFU);
* ``Megatron-DeepSpeed`` -- Smith et al. 2022 (MT-NLG 530B on 2240 to 3360
  A100s, iteration times) and BigScience 2022 (BLOOM-176B on 384 A100s,
  TFLOP/s per GPU);
* ``Megatron-Core H100`` -- the Megatron-LM README's weak-scaling table
  (Megatron-Core r0.8.0, GPT 1.7B to 462B on 48 to 6144 H100s, per-GPU
  TFLOP/s), in :mod:`measured_h100` with every assumption it makes.

Where a paper states throughput, the time is what its own FLOP count gives:
Narayanan et al.'s eq. 3 (recomputation counted) for TFLOP/s per GPU, the
model FLOPs of Korthikanti et al. appendix A (eq. 7) for MFU. Where a paper
leaves a setting out, the choice made here is written next to the run.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

from simulator import GPTConfig, Strategy, preset
from simulator.hardware import GB, US, ClusterSpec, LinkSpec

DATA = Path(__file__).parent / "data" / "megatron_a100_measured.csv"
A100_PEAK = 312e12  # dense bf16 FLOP/s (NVIDIA A100 datasheet)

VTRAIN = "vTrain"
KORTHIKANTI = "Korthikanti"
MEGATRON_LM = "Megatron-LM at scale"
DEEPSPEED = "Megatron-DeepSpeed"
MEGATRON_CORE = "Megatron-Core H100"
FAMILIES = (VTRAIN, KORTHIKANTI, MEGATRON_LM, DEEPSPEED, MEGATRON_CORE)

SOURCES = {
    VTRAIN: "Bang et al. 2024 (vTrain, MICRO), ground_truth_multi.csv: 108 Megatron-LM runs",
    KORTHIKANTI: "Korthikanti et al. 2022 (MLSys 2023), Tables 3 and 5",
    MEGATRON_LM: "Narayanan et al. 2021 (SC21), Table 1; Jiang et al. 2024 (MegaScale, "
    "NSDI), Table 2, Megatron-LM rows",
    DEEPSPEED: "Smith et al. 2022 (MT-NLG), sec. 2.3; BigScience 2022 (BLOOM), sec. 3.4",
    MEGATRON_CORE: "NVIDIA/Megatron-LM README.md (commit f2e5db402c on), weak-scaling table "
    "images/model_table.png, Megatron-Core r0.8.0 on H100s",
}


@dataclass(frozen=True)
class Run:
    """One measured training step and how to replay it.

    ``group`` is a finer label inside the family (for the plot and the report),
    ``gpus`` the devices the layout uses, ``measured_s`` the step time.
    """

    family: str
    group: str
    label: str
    model: GPTConfig
    strategy: Strategy
    cluster: ClusterSpec
    batch: int
    measured_s: float

    @property
    def gpus(self) -> int:
        return self.strategy.num_devices

    @property
    def grad_precision(self) -> str:
        """How the run's software accumulates and reduces gradients
        (``training.grad_precision``): in FP32 for a BF16 model, as Megatron-LM forces
        (``--bf16`` turns on ``accumulate_allreduce_grads_in_fp32``, ``megatron/arguments.py``
        at v2.5, ``megatron/training/arguments.py`` at core_v0.8.0) and DeepSpeed's BF16
        pipeline engine does since microsoft/DeepSpeed#1801 (2022, "fp32 reduction",
        written for BLOOM); in the model's dtype for FP16 runs (the flag is off for them)
        and for MT-NLG, trained in 2021 before DeepSpeed had that path."""
        if self.model.dtype == "bf16" and self.group != "MT-NLG 530B":
            return "fp32"
        return "model"

    @property
    def billions(self) -> float:
        """Parameters in billions, by Megatron-LM's eq. 2."""
        m = self.model
        h, layers = m.hidden, m.layers
        return (
            12
            * layers
            * h
            * h
            * (1 + 13 / (12 * h) + (m.vocab + m.seq_len) / (12 * layers * h))
            / 1e9
        )


def gpt(
    layers: int, hidden: int, heads: int, vocab: int = 51200, seq: int = 2048,
    attention: str = "materialised", dtype: str = "bf16",
) -> GPTConfig:  # fmt: skip
    """A Megatron GPT in bf16 unless the run's source says fp16 (dropout 0.1, as every
    run here trains); ``attention = "flash"`` for the fused attention kernel of
    Megatron-Core with Transformer Engine."""
    return GPTConfig(
        layers=layers, hidden=hidden, heads=heads, seq_len=seq, vocab=vocab, dropout=0.1,
        dtype=dtype, attention=attention,
    )  # fmt: skip


def dgx_a100(gpus: int) -> ClusterSpec:
    """DGX A100 nodes (Selene): NVSwitch, 8 HDR NICs each."""
    return preset("dgx-a100", nodes=math.ceil(gpus / 8))


def flops_eq3(m: GPTConfig, batch: int) -> float:
    """FLOPs per step with full recomputation, Narayanan et al. 2021, eq. 3:
    ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))``."""
    s, h, layers, v = m.seq_len, m.hidden, m.layers, m.vocab
    return 96 * batch * s * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))


def model_flops(m: GPTConfig, batch: int) -> float:
    """Model FLOPs per step, Korthikanti et al. 2022, appendix A, eq. 7:
    ``72 B l s h^2 (1 + s/(6h) + V/(12 h l))``."""
    s, h, layers, v = m.seq_len, m.hidden, m.layers, m.vocab
    return 72 * batch * layers * s * h * h * (1 + s / (6 * h) + v / (12 * h * layers))


# -- vTrain ----------------------------------------------------------------------------------
def vtrain_cluster(gpus: int) -> ClusterSpec:
    """DGX A100 nodes with the links of vTrain's configuration files: 150 GB/s per GPU
    inside a node (their figure), 800 Gb/s per node between nodes, as 8 NICs of
    100 Gb/s (with InfiniBand's achievable fraction, :mod:`simulator.hardware`)."""
    base = dgx_a100(gpus)
    nic = replace(base.inter_node, bandwidth=12.5 * GB)
    return replace(base, intra_node=LinkSpec(150 * GB, 3 * US), inter_node=nic)


def vtrain() -> list[Run]:
    """The 108 runs of vTrain's multi-node validation set (vocabulary 50257, 1F1B,
    full recomputation, one all-reduce after backward)."""
    with DATA.open() as f:
        rows = list(csv.reader(f))[1:]
    out = []
    for r in rows:
        params, gpus, batch, mb, h, a, layers, s, t, d, p, ms = r
        gpus, batch, mb, h, a, layers, s, t, d, p = map(
            int, (gpus, batch, mb, h, a, layers, s, t, d, p)
        )
        group = "vTrain tp=1" if t == 1 else "vTrain tp 2-8" if t <= 8 else "vTrain tp=16"
        strategy = Strategy(
            f"{params}B-t{t}d{d}p{p}b{mb}", dp=d, tp=t, pp=p, microbatches=batch // (d * mb),
            partition="uniform", recompute="full",
        )  # fmt: skip
        model = gpt(layers, h, a, vocab=50257, seq=s)
        out.append(Run(VTRAIN, group, strategy.name, model, strategy, vtrain_cluster(gpus),
                       batch, float(ms) / 1e3))  # fmt: skip
    return out


# -- Korthikanti et al. 2022 ------------------------------------------------------------------
#: Table 3 (heads, hidden, layers, pipeline size, GPUs, global batch, micro-batch; tensor
#: parallelism 8) and Table 5 (seconds per step, full recomputation and "present work").
_KORTHIKANTI = {
    "22B": (64, 6144, 48, 1, 8, 4, 4, 1.42, 1.10),
    "175B": (96, 12288, 96, 8, 64, 64, 1, 18.13, 13.75),
    "530B": (128, 20480, 105, 35, 280, 280, 1, 49.05, 37.83),
    "1T": (160, 25600, 128, 64, 512, 512, 1, 94.42, 71.49),
}


def korthikanti() -> list[Run]:
    out = []
    for name, (a, h, layers, p, gpus, batch, mb, full_s, present_s) in _KORTHIKANTI.items():
        model = gpt(layers, h, a)
        for group, recompute, sp, seconds in (
            ("Korthikanti full recompute", "full", False, full_s),
            ("Korthikanti SP + selective", "selective", True, present_s),
        ):
            strategy = Strategy(
                f"{name}-{recompute}", tp=8, pp=p, dp=gpus // (8 * p), microbatches=batch // mb,
                partition="uniform", recompute=recompute, sequence_parallel=sp,
            )  # fmt: skip
            out.append(Run(KORTHIKANTI, group, strategy.name, model, strategy, dgx_a100(gpus),
                           batch, seconds))  # fmt: skip
    return out


# -- Megatron-LM at scale ---------------------------------------------------------------------
#: Narayanan et al. 2021, Table 1: heads, hidden, layers, t, p, GPUs, batch, achieved
#: TFLOP/s per GPU (eq. 3). Micro-batch 1; with a pipeline the interleaved schedule with
#: the scatter/gather of messages (sec. 4.1), here with the fewest chunks (2 or 3) that
#: divide each stage's layers. The tensor-parallel all-reduces all block: Megatron-LM
#: gained its asynchronous input-gradient all-reduce (``async_tp``) only in August 2021
#: (NVIDIA/Megatron-LM commit cf7efd4, 2021-08-30, "--async-tensor-parallel-allreduce"),
#: after these measurements (arXiv:2104.04473, April 2021). Mixed precision in FP16:
#: the GPT-3 175B script released with the paper trains with ``--fp16``
#: (``examples/pretrain_gpt3_175B.sh`` at NVIDIA/Megatron-LM commit 50a4b5fa02,
#: "Release fixes", 2021-04-08); its optimizer copies the FP16 gradients to FP32 and
#: unscales them (:mod:`simulator.nn.optim`).
_NARAYANAN = [
    ("1.7B", 24, 2304, 24, 1, 1, 32, 512, 137),
    ("3.6B", 32, 3072, 30, 2, 1, 64, 512, 138),
    ("7.5B", 32, 4096, 36, 4, 1, 128, 512, 142),
    ("18.4B", 48, 6144, 40, 8, 1, 256, 1024, 135),
    ("39.1B", 64, 8192, 48, 8, 2, 512, 1536, 138),
    ("76.1B", 80, 10240, 60, 8, 4, 1024, 1792, 140),
    ("145.6B", 96, 12288, 80, 8, 8, 1536, 2304, 148),
    ("310.1B", 128, 16384, 96, 8, 16, 1920, 2160, 155),
    ("529.6B", 128, 20480, 105, 8, 35, 2520, 2520, 163),
    ("1T", 160, 25600, 128, 8, 64, 3072, 3072, 163),
]

#: Jiang et al. 2024 (MegaScale), Table 2, the Megatron-LM rows: GPT-3 175B (96 layers,
#: h 12288, 96 heads, sequence 2048), tensor 8 x pipeline 8, batch and GPUs, and the MFU
#: measured. Their baseline's other settings are not in the paper; assumed here:
#: Megatron-LM's of the time for GPT-3 (sequence parallelism, selective recomputation,
#: the distributed optimizer), micro-batch 1, non-interleaved 1F1B.
_MEGASCALE = [
    (768, 256, 0.533), (768, 512, 0.502), (768, 768, 0.469), (768, 1024, 0.449),
    (6144, 3072, 0.487), (6144, 6144, 0.477), (6144, 8192, 0.433), (6144, 12288, 0.412),
]  # fmt: skip


def _chunks(layers: int, pp: int) -> int:
    per_stage = layers // pp
    return next(v for v in (2, 3, 5) if per_stage % v == 0)


def megatron_lm() -> list[Run]:
    out = []
    for name, a, h, layers, t, p, gpus, batch, tflops in _NARAYANAN:
        model = gpt(layers, h, a, dtype="fp16")
        d = gpus // (t * p)
        pipeline = {}
        if p > 1:
            pipeline = dict(schedule="interleaved", chunks=_chunks(layers, p),
                            pp_scatter_gather=True)  # fmt: skip
        strategy = Strategy(
            f"{name}-t{t}p{p}d{d}", dp=d, tp=t, pp=p, microbatches=batch // d,
            partition="uniform", recompute="full", async_tp=False, **pipeline,
        )  # fmt: skip
        seconds = flops_eq3(model, batch) / (gpus * tflops * 1e12)
        out.append(Run(MEGATRON_LM, "Narayanan Table 1", strategy.name, model, strategy,
                       dgx_a100(gpus), batch, seconds))  # fmt: skip
    model = gpt(96, 12288, 96)
    for batch, gpus, mfu in _MEGASCALE:
        d = gpus // 64
        strategy = Strategy(
            f"175B-d{d}-B{batch}", dp=d, tp=8, pp=8, microbatches=batch // d,
            partition="uniform", recompute="selective", sequence_parallel=True, zero=1,
        )  # fmt: skip
        seconds = model_flops(model, batch) / (gpus * A100_PEAK * mfu)
        out.append(Run(MEGATRON_LM, "MegaScale baseline", strategy.name, model, strategy,
                       dgx_a100(gpus), batch, seconds))  # fmt: skip
    return out


# -- Megatron-DeepSpeed -----------------------------------------------------------------------
#: Smith et al. 2022, sec. 2.3: MT-NLG 530B (105 layers, h 20480, 128 heads, sequence
#: 2048), tensor 8 x pipeline 35, batch 1920, micro-batch 1, on 280, 350 and 420 DGX
#: A100 nodes: 60.1, 50.2 and 44.4 s per step (126, 121 and 113 TFLOP/s per GPU).
#: DeepSpeed's pipeline is 1F1B without interleaving; full recomputation; ZeRO-1. The
#: Megatron-DeepSpeed fork has no asynchronous tensor-parallel all-reduce (``async_tp``
#: off: bigscience-workshop/Megatron-DeepSpeed, megatron/mpu/layers.py, the fork BLOOM
#: ran; Megatron-LM added it in August 2021, commit cf7efd4).
_MTNLG = [(280, 60.1), (350, 50.2), (420, 44.4)]


def jean_zay(gpus: int) -> ClusterSpec:
    """The BLOOM nodes (IDRIS Jean Zay): 8 A100 80GB on NVSwitch, 4 Omni-Path 100 Gb/s
    adapters per node (BigScience 2022, sec. 3.4.1)."""
    base = dgx_a100(gpus)
    nic = replace(base.inter_node, bandwidth=12.5 * GB)
    return replace(base, name="jean-zay", inter_node=nic, nics_per_node=4)


def deepspeed() -> list[Run]:
    out = []
    model = gpt(105, 20480, 128)
    for nodes, seconds in _MTNLG:
        d = nodes * 8 // (8 * 35)
        # DeepSpeed's pipeline engine: TrainSchedule's lockstep steps, blocking sends
        # (Smith et al. 2022, sec. 2.3; deepspeed/runtime/pipe/schedule.py)
        strategy = Strategy(
            f"530B-d{d}", dp=d, tp=8, pp=35, microbatches=1920 // d, partition="uniform",
            recompute="full", zero=1, async_tp=False, schedule="deepspeed",
        )  # fmt: skip
        out.append(Run(DEEPSPEED, "MT-NLG 530B", strategy.name, model, strategy,
                       dgx_a100(nodes * 8), 1920, seconds))  # fmt: skip
    # BLOOM-176B: 70 layers, h 14336, 112 heads, vocabulary 250,880; tensor 4 x pipeline
    # 12 x data 8 on 384 GPUs, batch 2048, micro-batch 2, ZeRO-1, full recomputation;
    # about 150 TFLOP/s per GPU (eq. 3).
    bloom = gpt(70, 14336, 112, vocab=250880)
    # trained with Megatron-DeepSpeed's pipeline engine too (BigScience 2022, sec. 3.4.2)
    strategy = Strategy(
        "BLOOM-176B", dp=8, tp=4, pp=12, microbatches=2048 // (8 * 2), partition="uniform",
        recompute="full", zero=1, async_tp=False, schedule="deepspeed",
    )  # fmt: skip
    seconds = flops_eq3(bloom, 2048) / (384 * 150e12)
    out.append(Run(DEEPSPEED, "BLOOM 176B", strategy.name, bloom, strategy, jean_zay(384),
                   2048, seconds))  # fmt: skip
    return out


def every_run() -> list[Run]:
    """Every family's runs, in :data:`FAMILIES` order."""
    from measured_h100 import megatron_core  # it builds on this module's Run and gpt

    return vtrain() + korthikanti() + megatron_lm() + deepspeed() + megatron_core()
