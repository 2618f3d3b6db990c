"""What one simulated training step leaves behind, for the metrics to read.

The runtime keeps its counters per *simulated worker* -- a lockstep group of
devices, standing for one or more identical data-parallel replicas -- and
hands the metrics one :class:`StepRecord` per step. Nothing in it needs the
trace: compute and exposed-communication seconds are summed while the
workers run, so metrics cost nothing at scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..parallel.pipeline.actions import Action
    from .tapes import CompiledTape
    from .workers import SimWorker


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


class Tally:
    """What a step counts while it runs: losses, FLOPs, the first time of every action."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.model_flops = self.hardware_flops = 0.0  # over every device
        #: ``(stage, kind) -> seconds`` of the first action of each kind on each stage
        self.action_seconds: dict[tuple[int, str], float] = {}

    def start_step(self) -> None:
        self.losses = []
        self.model_flops = self.hardware_flops = 0.0

    def loss(self, value: float) -> None:
        """A micro-batch's mean loss; the step reports the mean over them."""
        self.losses.append(value)

    def mean_loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None

    def flops(self, sw: SimWorker, compiled: CompiledTape) -> None:
        """The GEMM FLOPs of a tape on ``sw``, for every replica it stands for."""
        replicas = len(sw.members)
        self.model_flops += compiled.model_flops * replicas
        self.hardware_flops += compiled.hardware_flops * replicas

    def action(self, action: Action, seconds: float) -> None:
        """The first duration of each action kind on each stage (the analytic bubble)."""
        key = (action.stage, str(action.kind))
        if key not in self.action_seconds:
            self.action_seconds[key] = seconds


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
