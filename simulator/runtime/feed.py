"""Which samples each micro-batch holds.

Every strategy draws the same global batch for a step
(:meth:`~simulator.nn.models.MLPConfig.batch` and its siblings, a pure
function of the seed and the step) and cuts it the same way: replica ``d``
takes rows ``d B/dp .. (d+1) B/dp``, and its micro-batch ``k`` the ``k``-th
slice of those. That is what makes single-device training the oracle of every
layout; dropout masks follow the global index of the first sample
(:class:`~simulator.nn.context.BatchInfo`).
"""

from __future__ import annotations

from typing import Any

from ..nn.context import BatchInfo
from ..parallel.build import Plan
from ..parallel.worker import Worker


class Feed:
    """The data of a run, one step at a time."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.training = plan.training
        self.size = plan.micro_batch_size
        self.microbatches = plan.strategy.microbatches
        self._batch: tuple[int, Any, Any] | None = None

    def first_sample(self, w: Worker, mb: int, step: int) -> int:
        """The global index of micro-batch ``mb``'s first sample on ``w``'s replica."""
        return step * self.training.global_batch + (w.dp_rank * self.microbatches + mb) * self.size

    def info(self, w: Worker, mb: int, step: int) -> BatchInfo:
        """What layers may ask about the samples of micro-batch ``mb`` (dropout does)."""
        return BatchInfo(self.training.seed, step, self.first_sample(w, mb, step), self.size)

    def whole(self, step: int, shape_only: bool) -> tuple[Any, Any]:
        """The global batch of ``step``: inputs and targets."""
        if self._batch is None or self._batch[0] != step:
            model = self.plan.model_config
            self._batch = (
                step,
                *model.batch(self.training.seed, step, self.training.global_batch, shape_only),
            )
        return self._batch[1], self._batch[2]

    def micro_batch(self, w: Worker, mb: int, step: int, shape_only: bool) -> tuple[Any, Any]:
        """Inputs and targets of micro-batch ``mb`` of ``w``'s replica."""
        x, y = self.whole(step, shape_only)
        lo = (w.dp_rank * self.microbatches + mb) * self.size
        # copies, so that a micro-batch's stash does not pin the whole global batch
        return x[lo : lo + self.size].copy(), y[lo : lo + self.size].copy()
