"""What each step counts while it runs: its losses, its FLOPs, its MoE layers' tokens
per expert, and how long each kind of action took the first time (what the analytic
bubble is fed with).

Counts are kept per step, by the step the counting worker is in: without a barrier
between steps (``[training] step_barrier = false``) one worker may already be in
the next step while another finishes this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..nn.context import Reports
    from ..parallel.pipeline.actions import Action
    from .tapes import CompiledTape
    from .workers import SimWorker


class Tally:
    """The counters of the steps under way (see the module docstring)."""

    def __init__(self) -> None:
        #: step -> the mean loss of every micro-batch that ended in a loss
        self.losses: dict[int, list[float]] = {}
        #: step -> the auxiliary losses (a mixture of experts' load balancing) of every
        #: micro-batch
        self.aux: dict[int, float] = {}
        #: step -> tokens each expert of each MoE layer got in the step
        self.tokens: dict[int, dict[str, list[int]]] = {}
        #: step -> [model FLOPs, hardware FLOPs] over every device
        self.step_flops: dict[int, list[float]] = {}
        #: ``(stage, kind) -> seconds`` of the first action of each kind on each stage
        self.action_seconds: dict[tuple[int, str], float] = {}

    def start_step(self, step: int) -> None:
        self.losses[step] = []
        self.aux[step] = 0.0
        self.tokens[step] = {}
        self.step_flops[step] = [0.0, 0.0]

    def loss(self, value: float, step: int) -> None:
        """A micro-batch's mean loss; the step reports the mean over them."""
        self.losses[step].append(value)

    def reports(self, reports: Reports, step: int, replicas: int = 1) -> None:
        """What a forward's MoE layers reported in step ``step``, for ``replicas``
        alike: their load-balancing losses (added to the objective) and tokens per
        expert."""
        self.aux[step] += sum(reports.aux)
        tokens = self.tokens[step]
        for layer, counts in reports.tokens.items():
            total = tokens.setdefault(layer, [0] * len(counts))
            for e, n in enumerate(counts):
                total[e] += n * replicas

    def mean_loss(self, step: int) -> float | None:
        """The step's loss: the mean over micro-batches of each one's loss plus its
        auxiliary losses."""
        losses = self.losses.get(step)
        if not losses:
            return None
        aux = self.aux.get(step, 0.0)
        return sum(losses) / len(losses) + (aux / len(losses) if aux else 0.0)

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
