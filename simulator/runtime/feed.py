"""Which samples each micro-batch holds.

Every strategy draws the same global batch for a step
(:meth:`~simulator.nn.models.MLPConfig.batch` and its siblings, a pure
function of the seed and the step) and cuts it the same way: replica ``d``
takes rows ``d B/dp .. (d+1) B/dp``, and its micro-batch ``k`` the ``k``-th
slice of those. That is what makes single-device training the oracle of every
layout; dropout masks follow the global index of the first sample
(:class:`~simulator.nn.context.BatchInfo`).

Every rank of a worker gets the whole micro-batch, except under context
parallelism: context-parallel rank ``c`` takes the tokens (inputs and
targets) at its positions of every sequence
(:class:`~simulator.parallel.context.layout.TokenLayout`), as Megatron-LM's
``get_batch_on_this_cp_rank`` cuts them.
"""

from __future__ import annotations

from typing import Any

from ..nn.context import BatchInfo
from ..ops.arrays import is_shape_only
from ..parallel.context.layout import TokenLayout
from ..parallel.training import TrainingConfig
from ..parallel.worker import Worker


class Feed:
    """The data of a run, one step at a time.

    ``model`` draws the batches (a model config: ``batch(seed, step, size,
    numerics)``); each micro-batch holds ``micro_batch_size`` samples, and a
    replica takes ``microbatches`` of them per step. :meth:`start_step` says which
    step the workers are in; without a barrier between steps each worker is in its
    own, which :meth:`enter` records. ``layout`` says which tokens each
    context-parallel rank holds (None: all of them) and ``tp`` how many ranks each has.
    """

    def __init__(
        self,
        model: Any,
        training: TrainingConfig,
        micro_batch_size: int,
        microbatches: int,
        layout: TokenLayout | None = None,
        tp: int = 1,
    ) -> None:
        self.model = model
        self.training = training
        self.size = micro_batch_size
        self.microbatches = microbatches
        self.layout = layout
        self.tp = tp
        self.step = 0
        self._steps: dict[int, int] = {}  # worker index -> its step, when they differ
        #: the batches of the last two steps asked for (two steps may be under way)
        self._batches: dict[int, tuple[Any, Any]] = {}

    def start_step(self, step: int) -> None:
        """Every worker is in step ``step``."""
        self.step = step
        self._steps.clear()

    def enter(self, workers: list[Worker], step: int) -> None:
        """``workers`` are in step ``step`` (the others may be in another)."""
        self.step = max(self.step, step)
        for w in workers:
            self._steps[w.index] = step

    def step_of(self, w: Worker) -> int:
        """The step ``w`` is in."""
        return self._steps.get(w.index, self.step)

    def first_sample(self, w: Worker, mb: int) -> int:
        """The global index of micro-batch ``mb``'s first sample on ``w``'s replica."""
        start = self.step_of(w) * self.training.global_batch
        return start + (w.dp_rank * self.microbatches + mb) * self.size

    def info(self, w: Worker, mb: int) -> BatchInfo:
        """What layers may ask about the samples of micro-batch ``mb`` (dropout does)."""
        step = self.step_of(w)
        return BatchInfo(self.training.seed, step, self.first_sample(w, mb), self.size)

    def whole(self, step: int) -> tuple[Any, Any]:
        """Step ``step``'s global batch: inputs and targets."""
        batch = self._batches.get(step)
        if batch is None:
            training = self.training
            batch = self.model.batch(training.seed, step, training.global_batch, training.numerics)
            self._batches = {k: v for k, v in self._batches.items() if k == step - 1}
            self._batches[step] = batch
        return batch

    def micro_batch(self, w: Worker, mb: int) -> tuple[Any, Any]:
        """Inputs and targets of micro-batch ``mb`` of ``w``'s replica."""
        x, y = self.whole(self.step_of(w))
        lo = (w.dp_rank * self.microbatches + mb) * self.size
        # copies, so that a micro-batch's stash does not pin the whole global batch
        return x[lo : lo + self.size].copy(), y[lo : lo + self.size].copy()

    def per_rank(self, w: Worker, mb: int) -> tuple[list[Any], list[Any]]:
        """Inputs and targets of micro-batch ``mb`` for every rank of ``w``: the whole
        micro-batch, or under context parallelism each rank's tokens of it."""
        x, y = self.micro_batch(w, mb)
        ranks = len(w.devices)
        layout = self.layout
        if layout is None:
            return [x] * ranks, [y] * ranks
        parts = []
        for c in range(layout.cp):
            where = layout.positions(c)
            mine = (x[:, where], y[:, where])
            if not is_shape_only(x):
                mine = (mine[0].copy(), mine[1].copy())
            parts += [mine] * self.tp
        return [p[0] for p in parts], [p[1] for p in parts]
