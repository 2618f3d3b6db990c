"""A schedule's longest path, worked out once per schedule and priced many times.

The planner's bound (:mod:`simulator.planner.bound`) places a schedule's actions
in time with each stage's own action times
(:func:`simulator.parallel.pipeline.timeline.run`): an action starts when its
rank has finished the one before and the actions it waits for have finished,
plus a message's time when one of those ran on another rank. Which actions an
action waits for, and the order in which they can be placed, depend on the
schedule alone; only the times change from layout to layout. A search asks the
same schedule again and again -- every tensor-parallel size, recomputation,
sequence parallelism, ZeRO stage and mesh order of a family shares it (GPT-3
175B on 1024 GPUs: 14,908 layouts to bound, 223 schedules) -- so
:class:`LongestPath` records the walk once
(:func:`~simulator.parallel.pipeline.timeline.walk`) as indices and replays it
with new times. It does the same maxima and sums in the same order as
:func:`~simulator.parallel.pipeline.timeline.run`, so every end is the same
float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..parallel.pipeline.actions import BW, Action, B, F, Item, Schedule, W
from ..parallel.pipeline.timeline import walk

#: Where an action's time sits in a stage's ``(F, B, W, BW)`` times.
INDEX = {F: 0, B: 1, W: 2, BW: 3}


@dataclass(frozen=True)
class LongestPath:
    """A schedule's items in placing order: per item its rank, its halves as indices
    into the stages' times laid end to end (``4 stage + INDEX[kind]``), and what it
    waits for as ``(item, whether that item ran on another rank)``."""

    ranks: int
    items: tuple[tuple[int, tuple[int, ...], tuple[tuple[int, bool], ...]], ...]

    @classmethod
    def of(cls, schedule: Schedule) -> LongestPath:
        """Walk ``schedule`` once (a schedule that cannot finish keeps the items it can
        place, as :func:`~simulator.parallel.pipeline.timeline.run` does)."""
        owner = schedule.stage_to_rank()
        where: dict[Action, tuple[int, int]] = {}  # action -> (its item, its stage's rank)
        items = []

        def place(r: int, _: int, __: Item, halves: list[Action], wanted: list[Action]) -> None:
            waits = []
            for d in wanted:
                i, rank = where[d]
                waits.append((i, rank != r))
            for a in halves:
                where[a] = (len(items), owner.get(a.stage, r))
            items.append((r, tuple(4 * a.stage + INDEX[a.kind] for a in halves), tuple(waits)))

        walk(schedule, place)
        return cls(len(schedule.ranks), tuple(items))

    def ends(self, times: Sequence[Sequence[float]], comm: float) -> list[float | None]:
        """When every rank's last item ends (None for a rank with none), each action
        taking ``times[stage][index]`` and each wait on another rank ``comm`` more.
        (The hot loop of a search: ``max`` and ``sum`` written out, the same floats.)"""
        flat = [t for stage in times for t in stage]
        end: list[float] = []
        last: list[float | None] = [None] * self.ranks
        for r, halves, waits in self.items:
            start = last[r]
            if start is None:
                start = 0
            for i, elsewhere in waits:
                ready = end[i] + comm if elsewhere else end[i]
                if ready > start:
                    start = ready
            if len(halves) == 1:
                finish = start + flat[halves[0]]
            else:  # an F&B pair: sum() adds from 0, one half after the other
                finish = start + (0 + flat[halves[0]] + flat[halves[1]])
            end.append(finish)
            last[r] = finish
        return last
