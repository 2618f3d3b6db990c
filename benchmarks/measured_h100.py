"""Measured Megatron-Core training steps on H100s: the ``Megatron-Core H100`` family.

Source: the Megatron-LM repository (github.com/NVIDIA/Megatron-LM), README.md,
"Training Speed and Scalability", from commit f2e5db402c ("New scaling figures
on H100 GPUs", July 2024) on: the weak-scaling table ``images/model_table.png``
(nine GPT models of 1.7B to 462B parameters on 48 to 6144 H100s, each with its
attention heads, hidden size, layers, tensor, pipeline and data-parallel
sizes, GPUs, global batch, per-GPU teraFLOP/s, MFU and aggregate
petaFLOP/s), measured with Megatron-Core r0.8.0 (the figures' legend). The
README states: vocabulary 131,072, sequence length 4096, and
``--overlap-grad-reduce --overlap-param-gather`` (data parallel),
``--tp-comm-overlap`` (tensor parallel) and pipeline communication overlapped
(on by default); throughput end to end (data loading, optimizer, logging).

The time of a step is what Megatron-LM's own FLOP count gives
(``num_floating_point_operations`` in ``megatron/training/training.py`` at
tag core_v0.8.0): ``12 B s L h^2 ((1 + g/a + s/h) q/h + f/h + V/(2 L h))``,
which for a GPT with multi-head attention (``g = a``, ``q = h``) and a 4h MLP
(``f = 4h``, no SwiGLU) is ``72 B s L h^2 (1 + s/(6h) + V/(12 h L))``, the
model FLOPs of Korthikanti et al. 2022, appendix A, eq. 7
(:func:`measured_runs.model_flops`): seconds = FLOPs / (GPUs x per-GPU
teraFLOP/s). The table's MFU is that teraFLOP/s over 989 TFLOP/s (the H100
SXM's dense BF16 peak, datasheet; 420.5 -> 43% and 459.9 -> 47% round so only
with 989, not 989.5), so the teraFLOP/s column, to 0.1, is used rather than
the MFU rounded to a percent.

What the README leaves out, and what is assumed here:

* model: GPT with learned position embeddings, LayerNorm, GELU and a 4h MLP,
  multi-head attention (the parameter counts of the table match ``12 L h^2 +
  2 V h``: untied input and output embeddings, e.g. 177B = 173.9B + 2 x 1.6B).
  The simulator's GPT ties them, so a pipelined replay also all-reduces the
  embedding's gradient between the first and last stage, which the measured
  runs do not; the FLOPs are the same;
* precision bf16 (the MFU is against the BF16 peak; FP8 would be stated);
* attention: Transformer Engine's fused (cuDNN flash) attention, the
  Megatron-Core default with Transformer Engine: ``attention = "flash"``;
* dropout 0.1 (Megatron-LM's default for hidden and attention dropout);
* micro-batch 1 (the global batch is 4 x pipeline size per data-parallel
  replica in every row, the pattern of micro-batch 1 with ``m = 4p``);
* no activation recomputation (Megatron-LM's default; with flash attention
  selective recomputation has nothing left to recompute);
* sequence parallelism wherever ``t > 1`` (``--tp-comm-overlap`` requires it),
  so pipeline messages carry ``1/t`` of each activation already;
* distributed optimizer, i.e. ZeRO-1 (``--overlap-param-gather`` requires it),
  gradients reduce-scattered in buckets of Megatron-Core's default size,
  ``max(40M, 1M x d)`` parameters, overlapped with backward. Megatron reduces
  bf16 models' gradients in fp32 (``accumulate_allreduce_grads_in_fp32``),
  and so does the replay (``Run.grad_precision``); the updated parameters
  are all-gathered beside the next step's forward, bucket by bucket, as
  ``--overlap-param-gather`` does (``overlap_param_gather``), each bucket's
  gather launched when the forward has waited for the one before, as r0.8
  does (``align_param_gather = false``: r0.8 has no ``--align-param-gather``);
* pipeline schedule: 1F1B, Megatron-LM's schedule when no virtual pipeline is
  given (``--num-layers-per-virtual-pipeline-stage`` unset). The table gives
  each run's tensor, pipeline and data-parallel sizes and no virtual-pipeline
  size, and two of its layer counts leave no other choice worth making: 119B
  has 23 layers per stage and 462B 7, both prime, so an interleaved schedule
  could only be one layer per virtual stage. The README's "PP (enabled by
  default)" is the default of ``--overlap-p2p-communication``, which
  ``validate_args`` switches off, with a warning, when there is no virtual
  pipeline ("non-interleaved schedule does not support overlapping p2p
  communication"; ``megatron/training/arguments.py`` at core_v0.8.0): it
  holds for either schedule and names neither. (Read as implying
  interleaving, with 2 layers per virtual stage, it replays the family
  further from the measurements: docs/accuracy.md gives both.)
* cluster: DGX H100 nodes (NVSwitch, 8 NDR 400 Gb/s NICs), ``preset("dgx-h100")``;
* tensor-parallel communication overlap (``--tp-comm-overlap``): see
  :data:`MCORE_OVERLAP`.

The README's strong-scaling figure (the 177B model from 96 to 4608 H100s at
batch 1152, MFU 47% down to 42%) states neither its layouts nor its points'
values, only a plot, and is left out.
"""

from __future__ import annotations

import math
from dataclasses import fields

from measured_runs import MEGATRON_CORE, Run, gpt, model_flops

from simulator import Strategy, preset
from simulator.hardware import ClusterSpec

VOCAB = 131072
SEQ = 4096

#: README weak-scaling table: name, heads, hidden, layers, tensor, pipeline, data-parallel
#: size, GPUs, global batch, per-GPU teraFLOP/s (MFU over 989 TFLOP/s in the comment).
_WEAK_SCALING = [
    ("1.7B", 16, 2048, 24, 1, 1, 48, 48, 192, 408.8),  # 41%
    ("7.1B", 32, 4096, 30, 2, 1, 48, 96, 192, 465.9),  # 47%
    ("16B", 48, 6144, 32, 4, 1, 48, 192, 192, 489.1),  # 49%
    ("32B", 56, 7168, 48, 8, 1, 48, 384, 192, 459.6),  # 46%
    ("70B", 64, 8192, 84, 8, 2, 48, 768, 384, 419.7),  # 42%
    ("119B", 80, 10240, 92, 8, 4, 48, 1536, 768, 420.5),  # 43%
    ("177B", 96, 12288, 96, 8, 6, 48, 2304, 1152, 432.8),  # 44%
    ("314B", 128, 16384, 96, 8, 8, 48, 3072, 1536, 474.4),  # 48%
    ("462B", 144, 18432, 112, 8, 16, 48, 6144, 3072, 459.9),  # 47%
]

#: What every run sets that the simulator may not have yet: Megatron-Core's
#: ``--tp-comm-overlap`` (the tensor-parallel all-gathers and reduce-scatters of
#: sequence parallelism split and overlapped with the GEMMs, Transformer Engine's
#: userbuffers). Applied only where :class:`Strategy` has the field, so the runs
#: switch it on as soon as the simulator models it.
MCORE_OVERLAP = {"tp_comm_overlap": True}


def _overlap_options(tp: int) -> dict[str, object]:
    have = {f.name for f in fields(Strategy)}
    return {k: v for k, v in MCORE_OVERLAP.items() if k in have} if tp > 1 else {}


def dgx_h100(gpus: int) -> ClusterSpec:
    """DGX H100 nodes: NVSwitch, 8 NDR 400 Gb/s NICs each."""
    return preset("dgx-h100", nodes=math.ceil(gpus / 8))


def bucket_mb(dp: int) -> float:
    """Megatron-Core's default gradient bucket, ``max(40M, 1M x d)`` parameters
    (``megatron/core/distributed/distributed_data_parallel.py``, core_v0.8.0), in MiB
    of bf16 gradients (the simulator's bucket unit)."""
    return max(40_000_000, 1_000_000 * dp) * 2 / 2**20


def strategy_for(name: str, t: int, p: int, d: int, batch: int, **changes: object) -> Strategy:
    """The assumed Megatron-Core layout of one row (module docstring); ``changes``
    override any option (the sensitivity checks)."""
    options = dict(
        dp=d, tp=t, pp=p, microbatches=batch // d, schedule="1f1b", partition="uniform",
        recompute="none", sequence_parallel=t > 1, zero=1, overlap_grad_reduce=True,
        overlap_param_gather=True, align_param_gather=False, bucket_mb=bucket_mb(d),
        **_overlap_options(t),
    )  # fmt: skip
    options.update(changes)
    return Strategy(name, **options)


def megatron_core(**changes: object) -> list[Run]:
    """The nine weak-scaling runs (``changes``: strategy options to override)."""
    out = []
    for name, a, h, layers, t, p, d, gpus, batch, tflops in _WEAK_SCALING:
        assert t * p * d == gpus, name
        model = gpt(layers, h, a, vocab=VOCAB, seq=SEQ, attention="flash")
        strategy = strategy_for(f"{name}-t{t}p{p}d{d}", t, p, d, batch, **changes)
        seconds = model_flops(model, batch) / (gpus * tflops * 1e12)
        out.append(Run(MEGATRON_CORE, "Megatron-Core r0.8.0 weak scaling", strategy.name,
                       model, strategy, dgx_h100(gpus), batch, seconds))  # fmt: skip
    return out
