"""Metrics of a run, all computed from what was recorded (DESIGN.md, key decision 6).

Definitions (the tests rely on them):

* ``iteration_time_s``: simulated length of the last training step, from the
  moment all workers start it to the moment the last one finishes its
  optimizer step (gradient synchronisation included).
* per device, over that step: ``compute_s`` (compute stream busy),
  ``comm_s`` (any of its links busy), ``comm_only_s`` (links busy while the
  compute stream is not) and ``idle_s`` (neither); ``compute_s + comm_only_s
  + idle_s = iteration_time_s``. ``exposed_comm_s``: time the device's compute
  stream waited while communication it needed was under way.
* ``bubble_fraction``: ``1 - mean(busy) / max(device span)``, a span running
  from a device's first to its last forward or backward op of the step (the
  optimizer step, after the pipeline has drained, is left out of both). With
  equal stages and free communication it is exactly ``(p-1)/(m+p-1)`` for
  GPipe and 1F1B, and it is the Zero Bubble paper's "bubble rate" (Qi et al.
  2024, sec. 5.3).
* ``bubble_fraction_analytic``: the schedule's closed form (see
  :mod:`simulator.parallel.pipeline.schedules`), fed with the measured times
  of the first stage's F, B and W; null when there is none.
* ``peak_inflight_microbatches``: the most micro-batches whose activations a
  device held at once (forward done, backward -- or W -- not yet).
* FLOPs count GEMMs only; ``mfu`` uses model FLOPs, ``hfu`` adds the forward
  passes that recomputation repeats (Chowdhery et al. 2022, PaLM, appendix B).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .intervals import covered
from .parallel.pipeline.schedules import get_schedule
from .trace import COMPUTE, Event


def device_times(mine: list[Event], lo: float, hi: float) -> dict[str, float]:
    """Compute, communication, communication-only and idle seconds of one device,
    from that device's events, over ``[lo, hi]``."""
    starts = np.clip(np.fromiter((e.start for e in mine), float, len(mine)), lo, hi)
    ends = np.clip(np.fromiter((e.end for e in mine), float, len(mine)), lo, hi)
    compute = np.fromiter((e.lane == COMPUTE for e in mine), bool, len(mine))
    work = compute & np.fromiter((e.cat != "opt" for e in mine), bool, len(mine))
    compute_s = covered(starts[compute], ends[compute])
    busy = covered(starts, ends)
    return {
        "compute_s": compute_s,
        "comm_s": covered(starts[~compute], ends[~compute]),
        "comm_only_s": busy - compute_s,
        "idle_s": (hi - lo) - busy,
        "work_s": covered(starts[work], ends[work]),
        "span_s": float(ends[work].max() - starts[work].min()) if work.any() else 0.0,
    }


def bubble_fraction(times: list[dict[str, float]]) -> float:
    """``1 - mean(busy) / max(span)`` over the devices, counting the forward and
    backward work (the optimizer step runs after the pipeline has drained)."""
    longest = max((t["span_s"] for t in times), default=0.0)
    if longest == 0:
        return 0.0
    return 1.0 - sum(t["work_s"] for t in times) / len(times) / longest


def analytic_bubble(runtime: Any) -> float | None:
    """The schedule's closed form with the first stage's measured action times."""
    s = runtime.plan.strategy
    if s.schedule.startswith("file:"):
        return None
    info = get_schedule(s.schedule)
    if info.bubble is None:
        return None
    seconds = runtime.action_seconds
    t_f = seconds.get((0, "F"), 0.0)
    if info.split_backward:
        t_b, t_w = seconds.get((0, "B"), 0.0), seconds.get((0, "W"), 0.0)
    else:
        t_b, t_w = seconds.get((0, "BW"), 0.0), 0.0
    return info.bubble(s.pp, s.microbatches, s.chunks, t_f, t_b, t_w)


def summarize(runtime: Any) -> dict[str, Any]:
    """The results-JSON entry of one strategy (see the README for every field)."""
    plan = runtime.plan
    s = plan.strategy
    lo, hi = runtime.step_windows[-1]
    iteration = hi - lo
    by_device: dict[int, list[Event]] = {}
    for e in runtime.engine.trace.events:
        if e.end > lo and e.start < hi:
            by_device.setdefault(e.device, []).append(e)
    worker_of = {d: w.index for w in plan.workers for d in w.devices}
    per_device = []
    for d in sorted(worker_of):
        times = device_times(by_device.get(d, []), lo, hi)
        per_device.append(
            {
                "device": d,
                **{k: v for k, v in times.items() if k not in ("span_s", "work_s")},
                "exposed_comm_s": runtime.exposed.get(d, 0.0),
                "peak_memory_bytes": runtime.engine.memory[d].peak,
                "bytes_sent": runtime.step_bytes_sent[d],
                "memory": runtime.engine.memory[d].breakdown(),
                "peak_inflight_microbatches": runtime.peak_inflight[worker_of[d]],
                "_span": (times["work_s"], times["span_s"]),
            }
        )
    spans = [dict(zip(("work_s", "span_s"), p.pop("_span"), strict=True)) for p in per_device]
    num = len(per_device)
    dtype = plan.model_config.dtype
    peak = plan.cluster.device.peak_flops.get(dtype, 0.0)
    capacity = peak * num * iteration
    samples = plan.training.global_batch
    return {
        "strategy": s.name,
        "status": "ok",
        "message": "",
        "dp": s.dp,
        "tp": s.tp,
        "pp": s.pp,
        "schedule": s.schedule if s.pp > 1 else None,
        "microbatches": s.microbatches,
        "chunks": s.chunks,
        "devices_used": num,
        "iteration_time_s": iteration,
        "bubble_fraction": bubble_fraction(spans),
        "bubble_fraction_analytic": analytic_bubble(runtime) if s.pp > 1 else 0.0,
        "exposed_comm_s": sum(p["exposed_comm_s"] for p in per_device) / num,
        "loss": list(runtime.losses),
        "parameters": plan.num_parameters,
        "model_flops_per_iteration": runtime.model_flops,
        "hardware_flops_per_iteration": runtime.hardware_flops,
        "mfu": runtime.model_flops / capacity if capacity else 0.0,
        "hfu": runtime.hardware_flops / capacity if capacity else 0.0,
        "tokens_per_s": plan.model_config.tokens(samples) / iteration if iteration else 0.0,
        "comm_bytes": {"dp": 0, "tp": 0, "pp": 0, **runtime.step_comm_bytes},
        "peak_memory_bytes": max(p["peak_memory_bytes"] for p in per_device),
        "devices": per_device,
    }
