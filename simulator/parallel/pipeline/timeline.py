"""Where each action of a schedule falls in time on an idealised pipeline.

A schedule only fixes the *order* of actions on every rank. :func:`run` places
them in time the way the papers draw their figures (Narayanan et al. 2021,
fig. 4; Qi et al. 2024, fig. 3): every ``F`` takes ``t_f``, every ``B``
``t_b``, every ``W`` ``t_w`` and a full backward ``BW`` ``t_b + t_w``; an
action starts as soon as its rank has finished the previous one and the
actions it depends on have finished
(:func:`~simulator.parallel.pipeline.actions.dependencies`), plus ``comm``
when one of them ran on another rank. That is a longest-path computation over
the schedule's dependency graph; a cycle in that graph means the schedule can
never finish, and the ranks left waiting are reported in ``Timeline.stuck``.
An ``F&B`` pair (:class:`~simulator.parallel.pipeline.actions.Pair`) is one
unit: it starts when both halves can, takes the sum of their times, and both
finish when it ends.

The simulator's runtime does the same thing with real costs; this module is
the cheap unit-time version for printing schedules, for the validator's
deadlock check (every action taking no time) and for designing schedules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import gcd, lcm

from .actions import BW, Action, B, F, Item, Schedule, W, backward_kinds, needs, parts

Number = int | float | Fraction


@dataclass(frozen=True)
class Timed:
    """An action (or an overlapped pair) placed in time: it ran at ``step`` of
    ``rank``'s list."""

    action: Item
    rank: int
    step: int
    start: Number
    end: Number


@dataclass(frozen=True)
class Timeline:
    """A schedule placed in time by :func:`run`.

    Attributes:
        schedule: the schedule.
        rows: per rank, the actions that could run, in order.
        stuck: ``(rank, step, action)`` for every rank that could not finish,
            at the action it waits at; empty when the schedule runs through.
    """

    schedule: Schedule
    rows: tuple[tuple[Timed, ...], ...]
    stuck: tuple[tuple[int, int, Action], ...]

    def busy(self, rank: int) -> Number:
        return sum(t.end - t.start for t in self.rows[rank])

    def span(self, rank: int) -> Number:
        """From the rank's first action's start to its last action's end."""
        row = self.rows[rank]
        return row[-1].end - row[0].start if row else 0

    @property
    def step(self) -> Number:
        """From the first action's start to the last action's end, over all ranks."""
        placed = [row for row in self.rows if row]
        if not placed:
            return 0
        return max(row[-1].end for row in placed) - min(row[0].start for row in placed)

    def bubble_fraction(self) -> Number:
        """``1 - mean(busy) / step``: the simulator's bubble metric (docs/design.md,
        "Definitions"): every rank's idle time over the step, averaged."""
        step = self.step
        if not step:
            return 0
        mean_busy = sum(self.busy(r) for r in range(len(self.rows))) / len(self.rows)
        return 1 - mean_busy / step

    def grid(self) -> str:
        """A rank x time text grid: one column per time unit, idle units shown as ``.``.

        The time unit is the largest one that divides every duration (1 when
        F, B and W take one unit each); an action longer than one unit
        continues in ``-`` cells. With unit times this is the picture of the
        papers' figures.
        """
        timed = [t for row in self.rows for t in row if t.end > t.start]
        if not timed:
            return self.schedule.grid()
        # float times are read to three decimals, so 0.1 does not become 2**-55ths
        unit = _common_unit([Fraction(t.end - t.start).limit_denominator(1000) for t in timed])
        origin = min(t.start for t in timed)
        columns = round((max(t.end for t in timed) - origin) / unit)
        width = max(4, *(len(str(t.action)) + 1 for t in timed))
        lines = [] if unit == 1 else [f"(one column = {unit} time units)"]
        lines.append("time    " + "".join(f"{c:>{width}}" for c in range(columns)))
        for r, row in enumerate(self.rows):
            cells = ["."] * columns
            for t in row:
                first = round((t.start - origin) / unit)
                last = round((t.end - origin) / unit)
                cells[first:last] = [str(t.action)] + ["-"] * (last - first - 1)
            lines.append(f"rank {r:<3}" + "".join(f"{c:>{width}}" for c in cells))
        return "\n".join(lines)


def _common_unit(durations: list[Fraction]) -> Fraction:
    """The largest duration that divides all of ``durations`` (all positive)."""
    numerator = 0
    denominator = 1
    for d in durations:
        denominator = lcm(denominator, d.denominator)
    for d in durations:
        numerator = gcd(numerator, d.numerator * (denominator // d.denominator))
    return Fraction(numerator, denominator)


Placing = Callable[[int, int, Item, list[Action], list[Action]], None]


def walk(schedule: Schedule, place: Placing) -> list[tuple]:
    """Call ``place(rank, step, item, halves, wanted)`` for every item of ``schedule``
    (an action or an ``F&B`` pair, its ``halves``), each after the items that finish
    the actions it waits for (``wanted``, :func:`~.actions.needs`) and after the
    item before it on its rank: the order :func:`run` places them in, which depends
    on the dependencies alone, not on the times. Returns the items never placed,
    as ``(rank, step, item)``: a cycle, or a dependency missing from the schedule.

    Linear in the number of actions: a rank that must wait is put aside on the
    action it waits for and taken up again when that action is placed.
    """
    kinds = backward_kinds(schedule)
    rows = [[(s, a) for s, a in enumerate(row) if a is not None] for row in schedule.ranks]
    placed: set[Action] = set()
    waiting: dict[Action, list[int]] = {}
    position = [0] * len(rows)
    ready = deque(range(len(rows)))
    while ready:
        r = ready.popleft()
        row = rows[r]
        while position[r] < len(row):
            step, item = row[position[r]]
            halves = parts(item)
            wanted = [d for a in halves for d in needs(schedule, a, kinds)]
            missing = next((d for d in wanted if d not in placed), None)
            if missing is not None:
                waiting.setdefault(missing, []).append(r)
                break
            place(r, step, item, halves, wanted)
            placed.update(halves)
            position[r] += 1
            for a in halves:
                ready.extend(waiting.pop(a, ()))
    return [(r, *row[position[r]]) for r, row in enumerate(rows) if position[r] < len(row)]


def run(
    schedule: Schedule,
    t_f: Number = 1,
    t_b: Number = 1,
    t_w: Number = 1,
    comm: Number = 0,
    duration_of: Callable[[Action], Number] | None = None,
) -> Timeline:
    """Place ``schedule`` in time (see the module docstring).

    Pass :class:`~fractions.Fraction` or integer times for exact arithmetic.
    ``duration_of(action)``, when given, replaces the per-kind times, e.g. with
    each stage's own. Actions whose dependencies are missing from the schedule
    wait forever and show up in ``stuck``, like a cycle does. Linear in the
    number of actions (:func:`walk`).
    """
    duration = {F: t_f, B: t_b, W: t_w, BW: t_b + t_w}
    owner = schedule.stage_to_rank()
    placed: list[list[Timed]] = [[] for _ in schedule.ranks]
    finish: dict[Action, tuple[Number, int]] = {}

    def place(r: int, step: int, item: Item, halves: list[Action], wanted: list[Action]) -> None:
        mine = placed[r]
        start = mine[-1].end if mine else 0
        for d in wanted:
            end, rank = finish[d]
            start = max(start, end + (comm if rank != r else 0))
        took = sum(duration[a.kind] if duration_of is None else duration_of(a) for a in halves)
        timed = Timed(item, r, step, start, start + took)
        mine.append(timed)
        for a in halves:
            finish[a] = (timed.end, owner.get(a.stage, r))

    stuck = tuple(walk(schedule, place))
    return Timeline(schedule, tuple(tuple(p) for p in placed), stuck)
