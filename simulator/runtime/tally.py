"""What each step counts while it runs: its losses, its FLOPs, and how long each kind of
action took the first time (what the analytic bubble is fed with).

Counts are kept per step, by the step the counting worker is in: without a barrier
between steps (``[training] step_barrier = false``) one worker may already be in
the next step while another finishes this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..parallel.pipeline.actions import Action
    from .tapes import CompiledTape
    from .workers import SimWorker


class Tally:
    """The counters of the steps under way (see the module docstring)."""

    def __init__(self) -> None:
        #: step -> the mean loss of every micro-batch that ended in a loss
        self.losses: dict[int, list[float]] = {}
        #: step -> [model FLOPs, hardware FLOPs] over every device
        self.step_flops: dict[int, list[float]] = {}
        #: ``(stage, kind) -> seconds`` of the first action of each kind on each stage
        self.action_seconds: dict[tuple[int, str], float] = {}

    def start_step(self, step: int) -> None:
        self.losses[step] = []
        self.step_flops[step] = [0.0, 0.0]

    def loss(self, value: float, step: int) -> None:
        """A micro-batch's mean loss; the step reports the mean over them."""
        self.losses[step].append(value)

    def mean_loss(self, step: int) -> float | None:
        losses = self.losses.get(step)
        return sum(losses) / len(losses) if losses else None

    def flops(self, sw: SimWorker, compiled: CompiledTape) -> None:
        """The GEMM FLOPs of a tape on ``sw``, for every replica it stands for."""
        replicas = len(sw.members)
        self.add_flops(sw, compiled.model_flops * replicas, compiled.hardware_flops * replicas)

    def add_flops(self, sw: SimWorker, model: float, hardware: float) -> None:
        """``model`` and ``hardware`` FLOPs that ``sw`` did in its step."""
        counts = self.step_flops[sw.step]
        counts[0] += model
        counts[1] += hardware

    def action(self, action: Action, seconds: float) -> None:
        """The first duration of each action kind on each stage (the analytic bubble)."""
        key = (action.stage, str(action.kind))
        if key not in self.action_seconds:
            self.action_seconds[key] = seconds
