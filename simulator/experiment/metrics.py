"""Metrics of a run, all computed from what was recorded (docs/design.md, key decision 6).

Definitions (the tests rely on them; docs/design.md, "Definitions"):

* ``iteration_time_s``: simulated length of the last training step, from the
  moment all workers start it to the moment the last one finishes its
  optimizer step (gradient synchronisation included).
* Every device's step splits into three parts that sum to the step:
  ``compute_s`` (its compute stream busy), ``exposed_comm_s`` (idle while a
  collective of its own group -- tensor-parallel, data-parallel, ZeRO, tied
  weights -- that it waits for is under way) and ``bubble_s`` (idle for any
  other reason: waiting for a pipeline neighbour's activation or gradient,
  that message's time on the link included; for a peer still computing
  before a collective can start; or for the step to end).
* ``compute_fraction``, ``exposed_comm_fraction``, ``bubble_fraction``: the
  mean over devices of each part over the step; the three sum to 1. With
  equal stages and free communication ``bubble_fraction`` is exactly
  ``(p-1)/(m+p-1)`` for GPipe and 1F1B. A run without a pipeline has no bubble
  beyond load imbalance.
* ``pipeline_bubble_rate``: the Zero Bubble paper's bubble rate (Qi et al. 2024,
  sec. 5.3): the idle time inside the longest rank's own span (its first to
  its last pipeline action) over that span (:func:`pipeline_bubble_rate`).
  It leaves out the skew by which later ranks start later, which a step
  ending in a barrier pays and a steady state without one does not
  (``[training] step_barrier``).
* ``bubble_fraction_analytic``: the schedule's closed form (see
  :mod:`simulator.parallel.pipeline.schedules`), fed with the measured times
  of the first stage's F, B and W; null when there is none.
* ``peak_inflight_microbatches``: the most micro-batches whose activations a
  device held at once (forward done, backward -- or W -- not yet).
* FLOPs count GEMMs only; ``mfu`` uses model FLOPs, ``hfu`` adds the forward
  passes that recomputation repeats (Chowdhery et al. 2022, PaLM, appendix B).
  The peak they divide by is the sum of the devices' own peaks
  (:func:`peak_flops`), so a cluster of A100s and H100s is measured against
  what its devices together could do.

Everything is read from the record of the finished run
(:class:`~simulator.runtime.record.RunRecord`, which nothing can change): the
last step's :class:`~simulator.runtime.record.StepRecord` -- its exposed
communication is the stretches the runtime recorded as they happened, the
ones the Gantt chart draws -- and the frozen memory ledgers. No scan of the
trace, so metrics cost the same for a million events as for ten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..hardware import ClusterSpec
from ..parallel.build import Plan
from ..runtime import RunRecord, StepRecord

#: the strategy's overlap options, listed in every result (docs/results.md)
OVERLAPS = (
    "overlap_grad_reduce",
    "overlap_param_gather",
    "prefetch_params",
    "async_tp",
    "tp_comm_overlap",
    "ep_overlap",
)


def analytic_bubble(plan: Plan, record: StepRecord) -> float | None:
    """The schedule's closed form with the first stage's measured action times."""
    s = plan.strategy
    if s.pp == 1:
        return 0.0
    info = plan.schedule_info
    if info is None or info.bubble is None:
        return None
    seconds = record.action_seconds
    t_f = seconds.get((0, "F"), 0.0)
    if info.split_backward:
        t_b, t_w = seconds.get((0, "B"), 0.0), seconds.get((0, "W"), 0.0)
    else:
        t_b, t_w = seconds.get((0, "BW"), 0.0), 0.0
    return info.bubble(s.pp, s.microbatches, s.chunks, t_f, t_b, t_w)


def pipeline_bubble_rate(record: StepRecord) -> float:
    """Qi et al. (2024, sec. 5.3)'s bubble rate: the idle time inside the longest span of
    any rank -- from its first pipeline action to the end of its last -- over that span.

    Idle means neither computing nor waiting for a collective of its own group
    (that wait is exposed communication, docs/design.md, "Definitions"). With
    equal stages and free communication it is ``(p-1)/(m+p-1)`` for GPipe and
    1F1B, ``(p-1)(T_F+T_B-T_W) / ((p-1)(T_F+T_B-T_W) + m(T_F+T_B+T_W))`` for
    ZB-H1 and ``(p-1)(T_F+T_B-2T_W) / (...)`` for ZB-H2 (Table 2), 0 for ZB-H2
    and ZB-V when ``T_F = T_B = T_W``. Of spans equally long, the idlest counts.
    """
    longest = max(record.workers, key=lambda w: (w.span_s, w.span_idle_s), default=None)
    if longest is None or longest.span_s <= 0:
        return 0.0
    return longest.span_idle_s / longest.span_s


def peak_flops(cluster: ClusterSpec, devices: Iterable[int], dtype: str) -> float:
    """The dense peak FLOP/s of ``devices`` together in ``dtype``, each its own kind's
    (the denominator of MFU, Chowdhery et al. 2022, appendix B, over the devices used)."""
    if cluster.homogeneous:
        return cluster.device.peak_flops.get(dtype, 0.0) * len(list(devices))
    kinds = Counter(cluster.device_of(d) for d in devices)
    return sum(spec.peak_flops.get(dtype, 0.0) * n for spec, n in kinds.items())


def _share(part: float, step: float) -> float:
    return part / step if step > 0 else 0.0


def summarize(plan: Plan, run: RunRecord) -> dict[str, Any]:
    """The results-JSON entry of ``plan``'s run (see the README for every field)."""
    s = plan.strategy
    record = run.steps[-1]
    step = record.seconds
    memory = run.memory
    per_device = []
    for w in record.workers:
        # rounding: the three parts of a lockstep group sum to the step exactly
        bubble = max(0.0, step - w.compute_s - w.exposed_s)
        for d in w.devices:
            ledger = memory[d]
            per_device.append(
                {
                    "device": d,
                    "compute_s": w.compute_s,
                    "exposed_comm_s": w.exposed_s,
                    "bubble_s": bubble,
                    "compute_fraction": _share(w.compute_s, step),
                    "exposed_comm_fraction": _share(w.exposed_s, step),
                    "bubble_fraction": _share(bubble, step),
                    "peak_memory_bytes": ledger.peak,
                    "bytes_sent": record.bytes_sent.get(d, 0),
                    "memory": ledger.breakdown(),
                    "peak_inflight_microbatches": w.peak_inflight,
                }
            )
    per_device.sort(key=lambda x: x["device"])
    num = len(per_device)

    def mean(key: str) -> float:
        return sum(x[key] for x in per_device) / num

    peak = peak_flops(plan.cluster, (x["device"] for x in per_device), plan.model_config.dtype)
    capacity = peak * step
    return {
        "strategy": s.name,
        "status": "ok",
        "message": "",
        "dp": s.dp,
        "cp": s.cp,
        "tp": s.tp,
        "pp": s.pp,
        "schedule": s.schedule if s.pp > 1 else None,
        "microbatches": s.microbatches,
        "chunks": plan.schedule.chunks_per_rank,
        "devices_used": num,
        "folded_replicas": record.folded_replicas,
        "iteration_time_s": step,
        "compute_fraction": mean("compute_fraction"),
        "exposed_comm_fraction": mean("exposed_comm_fraction"),
        "bubble_fraction": mean("bubble_fraction"),
        "bubble_fraction_analytic": analytic_bubble(plan, record),
        "pipeline_bubble_rate": pipeline_bubble_rate(record),
        "step_barrier": plan.training.step_barrier,
        "overlap": {name: getattr(s, name) for name in OVERLAPS},
        "exposed_comm_s": mean("exposed_comm_s"),
        "loss": run.losses,
        "parameters": plan.num_parameters,
        "active_parameters": plan.num_active_parameters,
        "model_flops_per_iteration": record.model_flops,
        "hardware_flops_per_iteration": record.hardware_flops,
        "mfu": record.model_flops / capacity if capacity else 0.0,
        "hfu": record.hardware_flops / capacity if capacity else 0.0,
        "tokens_per_s": plan.model_config.tokens(plan.training.global_batch) / step
        if step
        else 0.0,
        "comm_bytes": {"dp": 0, "tp": 0, "pp": 0, **record.comm_bytes},
        "peak_memory_bytes": max(x["peak_memory_bytes"] for x in per_device),
        **expert_load(record),
        "devices": per_device,
    }


def expert_load(record: StepRecord) -> dict[str, Any]:
    """For a mixture of experts: ``tokens_per_expert``, the tokens each expert got in
    the step over all MoE layers, and ``expert_imbalance``, the largest over the layers
    of the most-loaded expert's tokens over the mean (1: balanced). The expert ranks
    meet at every layer's all-to-all, so the most loaded expert of each layer sets
    its pace. Nothing for a dense model."""
    layers = record.tokens_per_expert
    if not layers:
        return {}
    totals = [sum(col) for col in zip(*layers.values(), strict=True)]
    ratios = [max(c) * len(c) / sum(c) for c in layers.values() if sum(c)]
    return {"tokens_per_expert": totals, "expert_imbalance": max(ratios, default=1.0)}
