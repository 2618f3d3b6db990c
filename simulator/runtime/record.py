"""What one simulated training step leaves behind, for the metrics to read.

The runtime keeps its counters per *simulated worker* -- a lockstep group of
devices, standing for one or more identical data-parallel replicas -- and
hands the metrics one :class:`StepRecord` per step. Nothing in it needs the
trace: compute and exposed-communication seconds are summed while the
workers run, so metrics cost nothing at scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerRecord:
    """One simulated worker's step.

    Attributes:
        devices: every device it stands for (all of them did exactly this).
        compute_s: seconds its compute stream was busy.
        exposed_s: seconds it sat idle waiting for a collective of its own group
            (tensor-parallel, data-parallel, ZeRO, tied weights) while that
            collective ran.
        peak_inflight: the most micro-batches whose activations it held at once.
    """

    devices: tuple[int, ...]
    compute_s: float
    exposed_s: float
    peak_inflight: int


@dataclass(frozen=True)
class StepRecord:
    """One training step (see the module docstring).

    Attributes:
        start, end: the step's window in simulated seconds.
        loss: mean loss over the global batch (None shape-only).
        model_flops, hardware_flops: GEMM FLOPs of the step over every device.
        workers: one record per simulated worker.
        bytes_sent: bytes each device sent during the step.
        comm_bytes: bytes sent during the step by all devices, by kind.
        action_seconds: ``(stage, kind) -> seconds`` of the first action of each
            kind on each stage (the analytic bubble uses stage 0's).
        folded_replicas: data-parallel replicas each simulated worker stands for.
    """

    start: float
    end: float
    loss: float | None
    model_flops: float
    hardware_flops: float
    workers: tuple[WorkerRecord, ...]
    bytes_sent: dict[int, int]
    comm_bytes: dict[str, int]
    action_seconds: dict[tuple[int, str], float] = field(default_factory=dict)
    folded_replicas: int = 1

    @property
    def seconds(self) -> float:
        return self.end - self.start
