"""What a run leaves behind: a record that cannot change, for metrics and pictures.

The runtime keeps its counters per *simulated worker* -- a lockstep group of
devices, standing for one or more identical data-parallel replicas -- and
closes every step with a :class:`StepRecord`. When the run is over (finished,
out of memory, diverged or stopped by a failed device) it hands back a
:class:`RunRecord`: the steps, the sealed trace, every device's memory
ledger frozen, the faults and how replicas were folded. The metrics
(:mod:`simulator.experiment.metrics`) and the pictures (:mod:`simulator.viz`)
read that and nothing else. Nothing in the step records needs the trace:
compute and exposed-communication seconds are summed while the workers run,
so metrics cost nothing at scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..engine.memory import MemoryRecord
    from ..engine.trace import Trace
    from .fold import Fold


@dataclass(frozen=True, eq=False)
class WorkerRecord:
    """One simulated worker's step.

    Attributes:
        devices: every device it stands for (all of them did exactly this).
        compute_s: seconds its compute stream was busy.
        exposed_s: seconds it sat idle waiting for a collective of its own group
            (tensor-parallel, data-parallel, ZeRO, tied weights) while that
            collective ran: the total of ``exposed``.
        peak_inflight: the most micro-batches whose activations it held at once.
        exposed: those stretches, ``(start, end)`` per row, in the order they
            happened (read-only).
        span_s: its span: from the start of its first pipeline action of the step to
            the end of its last (Qi et al. 2024, sec. 5.3); 0 if it ran none.
        span_idle_s: the time inside its span it neither computed nor waited for a
            collective of its own group: the pipeline bubble it sat in.
        end: when it finished the step.
    """

    devices: tuple[int, ...]
    compute_s: float
    exposed_s: float
    peak_inflight: int
    exposed: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    span_s: float = 0.0
    span_idle_s: float = 0.0
    end: float = 0.0


@dataclass(frozen=True)
class StepRecord:
    """One training step (see the module docstring).

    Attributes:
        start, end: the step's window in simulated seconds.
        loss: mean loss over the global batch (None without numerics).
        model_flops, hardware_flops: GEMM FLOPs of the step over every device.
        workers: one record per simulated worker.
        bytes_sent: bytes each device sent during the step.
        comm_bytes: bytes sent during the step by all devices, by kind.
        action_seconds: ``(stage, kind) -> seconds`` of the first action of each
            kind on each stage (the analytic bubble uses stage 0's).
        folded_replicas: data-parallel replicas each simulated worker stands for.
        tokens_per_expert: a mixture of experts' tokens per expert in the step, by
            MoE layer (empty for a dense model).
    """

    start: float
    end: float
    loss: float | None
    model_flops: float
    hardware_flops: float
    workers: tuple[WorkerRecord, ...]
    bytes_sent: Mapping[int, int]
    comm_bytes: Mapping[str, int]
    action_seconds: Mapping[tuple[int, str], float] = field(default_factory=dict)
    folded_replicas: int = 1
    tokens_per_expert: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, eq=False)
class RunRecord:
    """A finished run (see the module docstring).

    Attributes:
        steps: one record per step simulated (the last one cut short when a
            device failed).
        trace: everything every device did, sealed (:meth:`~simulator.engine.trace.Trace.seal`).
        memory: device -> its ledger, frozen; devices in lockstep share one.
        end: the simulated time the run stopped.
        fold: how many replicas each simulated one stood for, and why.
        stragglers: device -> its straggler fault (``factor``, ``jitter``).
        failed: device -> the simulated time it failed.
    """

    steps: tuple[StepRecord, ...]
    trace: Trace
    memory: Mapping[int, MemoryRecord]
    end: float
    fold: Fold
    stragglers: Mapping[int, Any]
    failed: Mapping[int, float]

    @property
    def losses(self) -> list[float | None]:
        """The mean loss of every step (None without numerics)."""
        return [s.loss for s in self.steps]
