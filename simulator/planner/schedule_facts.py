"""What the planner reads off a registry schedule, in closed form where one exists.

The memory estimate and the step-time bound need a few facts of a layout's
schedule: which rank runs each stage, every rank's first and last action, how
many actions there are, and the *stash profile* -- per rank, the mixes of
micro-batches it holds of each of its stages at a local maximum
(:func:`simulator.planner.memory_bound.stash_profile`). Building a schedule of
``p`` ranks and ``m`` micro-batches (``v`` chunks each) to read them costs
``O(p m v)`` actions; at GPT-3 scale (``m`` up to 1536) that is most of the
planner's time. For the schedules whose order is a formula the facts are
formulas too, in ``O(p v)`` or less:

* **naive** (one micro-batch at a time): every rank holds 1;
* **GPipe** (all forwards, then all backwards): ``m`` (Huang et al. 2019,
  sec. 2.3);
* **1F1B**: rank ``r`` runs ``min(p-r-1, m)`` warm-up forwards, then one
  more before its first backward and one forward per backward after it, so it
  holds ``min(p-r, m)`` (Narayanan et al. 2021, sec. 2.2.1);
* **ZB-H1, ZB-H2**: the 1F1B order with ``warmup(i)`` of ``p-1-i`` and
  ``2(p-1-i)``; the W that follows a B frees no activation stash (the
  profile counts a stash from F to B), so rank ``i`` holds ``min(warmup(i)+1,
  m)``: ``p-i`` and ``2(p-i)-1`` (Qi et al. 2024, Table 2);
* **interleaved 1F1B** (Narayanan et al. 2021, sec. 2.2.2): rank ``r`` runs
  forward number ``k`` on local chunk ``(k // p) mod v`` and backward number
  ``k`` on ``v - 1 - (k // p) mod v``; after ``w`` warm-up forwards, its
  ``k``-th forward-backward pair peaks at ``F(w+k+1) - B(k)`` per chunk,
  where ``F(n)`` counts a chunk's forwards among the first ``n``. Both counts
  grow by ``p`` per chunk every ``p v`` steps, so the peaks repeat with period
  ``p v`` and one period gives them all.

* **ZB-V** (Qi et al. 2024, :mod:`simulator.parallel.pipeline.zbv`): its
  cool-down is list-scheduled on the unit-time timeline, so it has no formula;
  but past ``m = 2p`` one more micro-batch only adds one steady-state round
  (six actions on every rank, no rank idle), which moves every later action by
  the same time and its micro-batch number by one: the list-scheduling makes
  the same choices, the profile is that of ``m = 2p`` and the last actions are
  ``m - 2p`` micro-batches later. The schedule of ``2p`` micro-batches is built
  instead of one of up to thousands.

DualPipe and DualPipeV (built from pieces) are built and read
(:func:`facts_of_schedule`).
``tests/planner/test_schedule_facts.py`` checks every formula against the
built schedule over ``p``, ``m`` and ``v`` (Hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..parallel.pipeline import get_schedule
from ..parallel.pipeline.actions import BW, FB, Action, F, Schedule, W
from . import memory_bound


@dataclass(frozen=True)
class ScheduleFacts:
    """What the planner keeps of a schedule.

    Attributes:
        num_stages: model stages (``pp * chunks``).
        rank_of: stage -> pipeline rank.
        profile: the stash profile (:func:`simulator.planner.memory_bound.stash_profile`).
        ends: per rank, its first and last action (None for a rank with none).
        split: whether backward is split into ``B`` and ``W`` (zero-bubble).
        actions: how many actions the schedule has.
        directions: 2 for DualPipe's two pipelines (stages ``S/2 ..`` run the other way).
        paired: whether it runs forwards and backwards as ``F&B`` pairs (DualPipe),
            where one's collectives hide behind the other's compute when the
            strategy overlaps them (:attr:`~simulator.parallel.strategy.Strategy.pairs_overlap`).
    """

    directions: int
    num_stages: int
    rank_of: dict[int, int]
    profile: Any
    ends: tuple[tuple[Action, Action] | None, ...]
    split: bool
    actions: int
    paired: bool = False


def facts_of_schedule(schedule: Schedule) -> ScheduleFacts:
    """The facts of a built schedule, read off its actions."""
    rows = [schedule.actions(r) for r in range(schedule.num_ranks)]
    return ScheduleFacts(
        directions=schedule.directions,
        num_stages=schedule.num_stages,
        rank_of=schedule.stage_to_rank(),
        profile=memory_bound.stash_profile(schedule),
        ends=tuple((row[0], row[-1]) if row else None for row in rows),
        split=schedule.split_backward,
        actions=sum(map(len, rows)),
        paired=any(
            item.kind == FB for r in range(schedule.num_ranks) for item in schedule.items(r)
        ),
    )


def _one_chunk(p: int, m: int, held: Callable[[int], int], last: Any, per_mb: int) -> ScheduleFacts:
    """A schedule with one stage per rank that holds ``held(r)`` micro-batches at its
    one peak, starts with ``F`` of micro-batch 0 and ends with ``last`` of ``m - 1``."""
    return ScheduleFacts(
        directions=1,
        num_stages=p,
        rank_of={r: r for r in range(p)},
        profile=tuple(((r,), ((held(r),),)) for r in range(p)),
        ends=tuple((Action(r, F, 0), Action(r, last, m - 1)) for r in range(p)),
        split=last == W,
        actions=per_mb * m * p,
    )


def _count(n: int, chunk: int, p: int, v: int) -> int:
    """How many of the first ``n`` virtual micro-batches of interleaved 1F1B run on
    local ``chunk``: each run of ``p v`` holds ``p`` of every chunk, in order."""
    full, rest = divmod(n, p * v)
    return full * p + min(max(rest - chunk * p, 0), p)


def _interleaved(p: int, m: int, v: int) -> ScheduleFacts:
    total = m * v
    profile = []
    ends = []
    for r in range(p):
        warmup = min(2 * (p - r - 1) + (v - 1) * p, total)
        tops = set()
        # pair k peaks after forward warmup + k + 1 (all forwards when there is no pair);
        # the peaks repeat every p v pairs (module docstring)
        for k in range(min(max(1, total - warmup), p * v)):
            ahead = min(warmup + k + 1, total)
            tops.add(tuple(_count(ahead, c, p, v) - _count(k, v - 1 - c, p, v) for c in range(v)))
        profile.append((tuple(c * p + r for c in range(v)), memory_bound.undominated(tops)))
        k = total - 1  # the last backward: virtual micro-batch total - 1
        last = Action((v - 1 - (k // p) % v) * p + r, BW, (k // (p * v)) * p + k % p)
        ends.append((Action(r, F, 0), last))
    return ScheduleFacts(
        directions=1,
        num_stages=p * v,
        rank_of={c * p + r: r for r in range(p) for c in range(v)},
        profile=tuple(profile),
        ends=tuple(ends),
        split=False,
        actions=2 * total * p,
    )


def _zbv(p: int, m: int, v: int) -> ScheduleFacts:
    """ZB-V's facts past ``m = 2p``: those of ``m = 2p`` with the last micro-batch
    numbers moved on (module docstring)."""
    base = min(m, 2 * p)
    facts = facts_of_schedule(get_schedule("zbv")(p, base, v))
    if base == m:
        return facts
    ends = tuple(
        None if e is None else (e[0], e[1]._replace(mb=e[1].mb + m - base)) for e in facts.ends
    )
    return replace(facts, ends=ends, actions=facts.actions // base * m)


#: Registry name -> the facts of its ``(p, m, v)`` schedule, for the closed forms.
CLOSED_FORMS: dict[str, Callable[[int, int, int], ScheduleFacts]] = {
    "naive": lambda p, m, v: _one_chunk(p, m, lambda r: 1, BW, 2),
    "gpipe": lambda p, m, v: _one_chunk(p, m, lambda r: m, BW, 2),
    "1f1b": lambda p, m, v: _one_chunk(p, m, lambda r: min(p - r, m), BW, 2),
    "zb-h1": lambda p, m, v: _one_chunk(p, m, lambda r: min(p - r, m), W, 3),
    "zb-h2": lambda p, m, v: _one_chunk(p, m, lambda r: min(2 * (p - r) - 1, m), W, 3),
    "interleaved": _interleaved,
    "zbv": _zbv,
}
