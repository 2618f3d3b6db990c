"""A lower bound on a layout's step time: what lets the planner skip most simulations.

The planner is a branch and bound (Land and Doig 1960): it simulates layouts
in the order of a lower bound on their step time and stops when the next
bound is no better than the ``k``-th fastest step simulated so far. Every
layout it skips is provably slower than the ``k`` it shows, so the top ``k``
are those an exhaustive search finds; the skipped layouts are counted under
:data:`BOUND_RULE`.

**The bound.** In the simulator a pipeline rank runs its schedule's actions
one at a time, in the schedule's order, and an action starts only after the
actions it depends on have finished (its input activation, its output
gradient; :func:`~simulator.parallel.pipeline.actions.dependencies`). An
action lasts at least its compute: the seconds of its compute segments on
the device's roofline -- the same blocks, run by the same
:class:`~simulator.parallel.stage.Chunk` code on a tape priced by the same
:func:`~simulator.runtime.tapes.compile_tape` as the runtime's. Everything
else a simulation adds (tensor-parallel collectives, pipeline messages, the
data-parallel gradient sync, ZeRO gathers, the optimizer) only delays
actions. So the longest path through the schedule's dependency graph, with
every action taking its compute
(:func:`~simulator.parallel.pipeline.timeline.run`), is at most the
simulated step. It is the pipeline's ideal makespan: compute plus the
schedule's own bubble (Narayanan et al. 2021, sec. 2.2, eq. 1 for 1F1B).

A block's compute is the same in every stage that holds it (compute segments
end at every block's mark), so a stage's is the sum of its blocks', each
priced once per (``tp``, sequence parallelism, recomputation, micro-batch
size, precision, and context parallelism: a ``cp x tp`` worker runs its
blocks on each rank's tokens, :mod:`simulator.parallel.context`). The sum is
scaled by ``1 - 1e-9`` so that summing in another order than the runtime
cannot push the bound over the simulated time.

The bound needs one kind of device (on mixed clusters it is 0: no layout is
skipped) and the strategy variants whose compute is the chunks' own (the
``replicated`` variant gathers outputs on one device: 0 as well).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

from ..comm.layout import GroupLayout, placed
from ..engine.cost import CostModel
from ..nn.context import BatchInfo, batch
from ..ops.tape import recording
from ..parallel.build import (
    context_copies,
    group_block,
    group_loss,
    resolve_schedule,
    token_layout,
)
from ..parallel.data import get_variant
from ..parallel.mesh import Mesh
from ..parallel.pipeline.actions import BW, Action, B, F, W
from ..parallel.pipeline.timeline import run as place_in_time
from ..parallel.stage import Chunk
from ..parallel.strategy import Strategy
from ..runtime.tapes import compile_tape
from .prune import Pruner, schedule_key, signature

#: The rule name of layouts the bound skips.
BOUND_RULE = "step-time lower bound no better than the k-th fastest simulated"
#: Slack for summing a stage's compute in another order than the runtime does.
SLACK = 1.0 - 1e-9
#: Schedules with more actions get the quick bound only (the longest path costs
#: a few microseconds per action).
MAX_ACTIONS = 50_000
#: Per block: seconds of F, B (input gradient), W (weight gradient) and BW (both).
Times = tuple[float, float, float, float]


def _compute_key(s: Strategy) -> tuple:
    """What the compute of a block depends on, besides the micro-batch size."""
    return (s.tp, s.sequence_parallel, s.recompute, s.precision, s.cp, s.context_parallel,
            s.cp_balance, s.ep)  # fmt: skip


class StepBound:
    """Lower bounds on the step time of layouts a :class:`Pruner` let through."""

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner
        cluster = pruner.cluster
        self.cost = CostModel(cluster.device)
        self.active = cluster.homogeneous
        self._blocks: dict[Hashable, list[Times]] = {}
        self._bounds: dict[Hashable, float] = {}
        self._quick: dict[Hashable, float] = {}

    def _stage_times(self, s: Strategy) -> list[Times]:
        """Per stage of ``s``, the compute seconds of its F, B, W and BW."""
        pruner = self.pruner
        micro_batch = pruner.micro_batch(s)
        key = (*_compute_key(s), micro_batch)
        blocks = self._blocks.get(key)
        if blocks is None:
            blocks = self._blocks[key] = self.block_times(s, micro_batch)
        stages = pruner.stages_of(s, micro_batch)
        return [tuple(sum(blocks[i][k] for i in stage) for k in range(4)) for stage in stages]

    def quick(self, s: Strategy) -> float:
        """A lower bound in O(stages): the largest over the pipeline ranks of

        * the forwards of the stages before the rank's first action's stage (its
          input must come down the pipeline first), plus
        * the compute of every one of its actions (they run one at a time), plus
        * after its last action, when that is a backward of stage ``s``, the
          backwards of stages ``s-1, ..., 0`` (the gradient must go up the pipeline).

        For GPipe, 1F1B and interleaved 1F1B with equal stages this is their ideal
        makespan, ``(m + (p-1)/v)(t_F + t_B)`` (Narayanan et al. 2021, sec. 2.2).
        """
        if not self.active or not get_variant(s.data_parallel).symmetric:
            return 0.0
        key = self._key(s)
        bound = self._quick.get(key)
        if bound is None:
            bound = self._quick[key] = self._quick_bound(s)
        return bound

    def _key(self, s: Strategy) -> Hashable:
        """What a bound depends on: the compute of every block, the stages, the schedule."""
        micro_batch = self.pruner.micro_batch(s)
        return (
            (*_compute_key(s), micro_batch),
            self.pruner.stages_of(s, micro_batch),
            schedule_key(s),
        )

    def _quick_bound(self, s: Strategy) -> float:
        facts = self.pruner.schedule_of(s)
        times = self._stage_times(s)
        back = [b + w if facts.split else bw for _, b, w, bw in times]
        chain = [b if facts.split else bw for _, b, _, bw in times]
        busy = [0.0] * len(facts.ends)
        per_stage = s.microbatches // facts.directions  # DualPipe: half each way
        for stage, (f, *_rest) in enumerate(times):
            busy[facts.rank_of[stage]] += per_stage * (f + back[stage])
        bound = 0.0
        per = facts.num_stages // facts.directions  # each direction's stages (DualPipe)
        for r, ends in enumerate(facts.ends):
            if ends is None:
                continue
            first, last = ends
            head = sum(times[i][0] for i in range(first.stage - first.stage % per, first.stage))
            start = last.stage - last.stage % per
            tail = sum(chain[start : last.stage]) if last.kind in (B, BW) else 0.0
            bound = max(bound, head + busy[r] + tail)
        return bound * SLACK

    def seconds(self, s: Strategy) -> float:
        """A lower bound on the simulated step time of layout ``s``: the longest path
        through its schedule with every action taking its compute (module docstring),
        or :meth:`quick` when the schedule has more than :data:`MAX_ACTIONS` actions."""
        if not self.active or not get_variant(s.data_parallel).symmetric:
            return 0.0
        facts = self.pruner.schedule_of(s)
        if facts.actions > MAX_ACTIONS:
            return self.quick(s)
        key = self._key(s)
        bound = self._bounds.get(key)
        if bound is None:
            per_stage = self._stage_times(s)
            index = {F: 0, B: 1, W: 2, BW: 3}

            def took(a: Action) -> float:
                return per_stage[a.stage][index[a.kind]]

            timeline = place_in_time(resolve_schedule(s, None), duration_of=took)
            end = max((row[-1].end for row in timeline.rows if row), default=0.0)
            bound = self._bounds[key] = max(end * SLACK, self.quick(s))
        return bound

    def block_times(self, s: Strategy, micro_batch: int) -> list[Times]:
        """Per block of the model, the compute seconds of its F, B, W and BW for one
        micro-batch under ``s``'s tensor parallelism and recomputation (the last block
        with the loss). Blocks of equal kind and input shapes are priced once."""
        pruner = self.pruner
        model, config, training = pruner.model, pruner.model_config, pruner.training
        x, y = config.batch(training.seed, 0, micro_batch, numerics=False)
        mesh = Mesh(1, s.tp, 1, s.order, cp=s.cp)
        ranks = tuple(mesh.device(cp=c, tp=t) for c in range(s.cp) for t in range(s.tp))
        layout = GroupLayout.of(pruner.cluster, ranks)
        info = BatchInfo(training.seed, 0, 0, micro_batch)
        scale = 1.0 / s.microbatches
        last = len(model.blocks) - 1
        tokens = token_layout(config, s)
        if tokens is not None:  # a context-parallel rank's copy of the model and tokens
            model = context_copies(copy.deepcopy(model), s, tokens, numerics=False)[0]
            x, y = x[:, tokens.positions(0)], y[:, tokens.positions(0)]
        xs: list[Any] = [x] * len(ranks)
        seen: dict[Hashable, tuple[Times, list[Any]]] = {}
        out_times = []
        with batch(info), placed(layout):
            for i, block in enumerate(model.blocks):
                key = (signature(block), i == last, tuple(getattr(a, "shape", None) for a in xs))
                if key not in seen:
                    loss = group_loss([model.loss] * s.cp, s, tokens, False) if i == last else None
                    group = group_block([block] * s.cp, s, tokens, False)
                    chunk = Chunk(0, [group], loss, s.recompute, s.precision)
                    targets = [y] * len(ranks) if i == last else None
                    seen[key] = self._price(chunk, xs, targets, scale)
                times, xs = seen[key]
                out_times.append(times)
        return out_times

    def _price(
        self, chunk: Chunk, xs: list[Any], targets: list[Any] | None, scale: float
    ) -> tuple[Times, list[Any]]:
        """The compute seconds of the chunk's F, B, W and BW, and its forward's output."""

        def priced(fn: Any) -> tuple[Any, float]:
            with recording() as tape:
                result = fn()
            return result, compile_tape(tape, self.cost, False).seconds

        (out, ctx), f = priced(lambda: chunk.forward(xs, targets))
        dys = None if targets is not None else out
        _, bw = priced(lambda: chunk.backward(dys, ctx, scale))
        (out, ctx), _ = priced(lambda: chunk.forward(xs, targets))
        (_, wctxs), b = priced(lambda: chunk.backward_input(dys, ctx, scale))
        _, w = priced(lambda: chunk.backward_weight(wctxs))
        return (f, b, w, bw), out
