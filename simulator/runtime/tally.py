"""What a step counts while it runs: its losses, its FLOPs, and how long each kind of
action took the first time (what the analytic bubble is fed with)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..nn.context import Reports
    from ..parallel.pipeline.actions import Action
    from .tapes import CompiledTape
    from .workers import SimWorker


class Tally:
    """The counters of the step under way (see the module docstring)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        #: the auxiliary losses (a mixture of experts' load balancing) of every micro-batch
        self.aux = 0.0
        #: tokens each expert of each MoE layer got in the step
        self.tokens: dict[str, list[int]] = {}
        self.model_flops = self.hardware_flops = 0.0  # over every device
        #: ``(stage, kind) -> seconds`` of the first action of each kind on each stage
        self.action_seconds: dict[tuple[int, str], float] = {}

    def start_step(self) -> None:
        self.losses = []
        self.aux = 0.0
        self.tokens = {}
        self.model_flops = self.hardware_flops = 0.0

    def loss(self, value: float) -> None:
        """A micro-batch's mean loss; the step reports the mean over them."""
        self.losses.append(value)

    def reports(self, reports: Reports, replicas: int = 1) -> None:
        """What a forward's MoE layers reported, for ``replicas`` alike: their
        load-balancing losses (added to the objective) and tokens per expert."""
        self.aux += sum(reports.aux)
        for layer, counts in reports.tokens.items():
            total = self.tokens.setdefault(layer, [0] * len(counts))
            for e, n in enumerate(counts):
                total[e] += n * replicas

    def mean_loss(self) -> float | None:
        """The step's loss: the mean over micro-batches of each one's loss plus its
        auxiliary losses."""
        if not self.losses:
            return None
        return sum(self.losses) / len(self.losses) + (
            self.aux / len(self.losses) if self.aux else 0.0
        )

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
