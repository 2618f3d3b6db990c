"""Check a schedule before it runs, and explain what is wrong on the grid.

The rules, for ``S`` stages and ``m`` micro-batches, checked in this order so
that each mistake is reported by the rule that explains it best:

1. every action names a stage in ``0..S-1`` and a micro-batch in ``0..m-1``,
   and every stage runs on exactly one rank;
2. no action appears twice;
3. every stage runs on some rank, and every ``(stage, micro-batch)`` has one
   ``F`` and one full backward ``BW`` -- or one ``B`` and one ``W``, its
   backward split (Qi et al. 2024, sec. 2; a schedule may split some and not
   others, as DualPipe does), never both. A missing action is reported at the
   cell of its partner: the F without a backward, the W without its B. A
   schedule of two directions (DualPipe) runs each half of the micro-batches
   through its own half of the stages;
4. on one rank, no action comes before something it needs from that rank
   (``B`` before its ``F``, ``W`` before its ``B``, or a stage's work before
   the same rank's work on the stage feeding it), and the two halves of an
   ``F&B`` pair, which run at once, do not need each other;
5. it can run: each action waits only for actions that can happen before it
   (:func:`~simulator.parallel.pipeline.actions.dependencies`). Sends never
   block (they are buffered), so the only way to get stuck is a cycle of
   waits across ranks, found by placing the schedule in time with every
   action taking no time (:func:`~simulator.parallel.pipeline.timeline.run`).

Each error is one :class:`~simulator.errors.ScheduleError` that names the
rank and the step, explains the rule, and shows the rank x step grid with
the offending cell marked ``>like this<``. The runtime's own deadlock
detection (:class:`~simulator.errors.DeadlockError`) remains the last line of
defence for programs built without this check.
"""

from __future__ import annotations

from ...errors import ScheduleError
from .actions import BW, Action, B, F, Pair, Schedule, W, backward_kinds, needs, parts
from .timeline import run

_NAMES = {
    F: "the forward",
    B: "the input-gradient backward",
    W: "the weight gradient",
    BW: "the backward",
}
_HINTS = {
    (F, BW): "every forward needs its backward on the same stage",
    (F, B): "every forward needs its backward on the same stage",
    (BW, F): "a backward needs the forward that stashed its activations",
    (B, F): "a backward needs the forward that stashed its activations",
    (B, W): "a schedule with W actions splits every backward and needs one W per B",
    (W, B): "W computes the weight gradient from what its B leaves behind",
}


def _fail(schedule: Schedule, message: str, cell: tuple[int, int] | None) -> ScheduleError:
    return ScheduleError(f"schedule {schedule.name!r}: {message}\n{schedule.grid(mark=cell)}")


def _cells(schedule: Schedule) -> list[tuple[int, int, Action]]:
    """Every action with its rank and step (a pair's two halves share their cell)."""
    ranks = schedule.ranks
    return [
        (r, s, a)
        for r, row in enumerate(ranks)
        for s, item in enumerate(row)
        if item is not None
        for a in parts(item)
    ]


def validate(
    schedule: Schedule, num_stages: int | None = None, microbatches: int | None = None
) -> None:
    """Raise :class:`ScheduleError` unless ``schedule`` is complete and can run.

    ``num_stages`` and ``microbatches``, when given, are what the strategy
    expects; the schedule must cover exactly those. Otherwise they are read
    off the schedule (the largest stage and micro-batch it names). The rules are
    checked in the module docstring's order, one function each.
    """
    stages = schedule.num_stages if num_stages is None else num_stages
    m = schedule.microbatches if microbatches is None else microbatches
    cells = _cells(schedule)
    owner = _in_range_on_one_rank(schedule, cells, stages, m)  # 1
    seen = _each_action_once(schedule, cells)  # 2
    _every_stage_has_a_rank(schedule, owner, stages)  # 3
    _every_micro_batch_runs(schedule, cells, owner, seen, m)
    _one_kind_of_backward(schedule, cells, seen)
    _every_action_has_its_partners(schedule, cells, seen)
    _needs_come_first_on_each_rank(schedule, stages)  # 4
    _no_cycle_of_waits(schedule, owner, stages)  # 5


def _in_range_on_one_rank(
    schedule: Schedule, cells: list[tuple[int, int, Action]], stages: int, m: int
) -> dict[int, int]:
    """Rule 1: stages and micro-batches in range, every stage on one rank (cell by cell,
    so the first faulty cell is reported). Returns stage -> its rank."""
    owner: dict[int, int] = {}
    for r, s, a in cells:
        if a.stage >= stages:
            raise _fail(
                schedule,
                f"rank {r}, step {s}: {a} names stage {a.stage} but the model has "
                f"{stages} stages (0..{stages - 1})",
                (r, s),
            )
        if a.mb >= m:
            raise _fail(
                schedule,
                f"rank {r}, step {s}: {a} names micro-batch {a.mb} but the step has "
                f"{m} micro-batches (0..{m - 1})",
                (r, s),
            )
        mine = _route(schedule, a.stage, stages, m)
        if a.mb not in mine:
            raise _fail(
                schedule,
                f"rank {r}, step {s}: {a} names micro-batch {a.mb}, but stage {a.stage} "
                f"belongs to the direction of micro-batches {mine.start}..{mine.stop - 1}",
                (r, s),
            )
        if owner.setdefault(a.stage, r) != r:
            raise _fail(
                schedule,
                f"rank {r}, step {s}: stage {a.stage} also runs on rank {owner[a.stage]}; "
                "each stage must live on exactly one rank (its weights and stashes are there)",
                (r, s),
            )
    return owner


def _each_action_once(
    schedule: Schedule, cells: list[tuple[int, int, Action]]
) -> dict[Action, tuple[int, int]]:
    """Rule 2: no action twice. Returns every action's cell."""
    seen: dict[Action, tuple[int, int]] = {}
    for r, s, a in cells:
        if a in seen:
            r0, s0 = seen[a]
            raise _fail(
                schedule,
                f"rank {r}, step {s}: {a} appears again (first at rank {r0}, step {s0}); "
                "each action must appear exactly once",
                (r, s),
            )
        seen[a] = (r, s)
    return seen


def _every_stage_has_a_rank(schedule: Schedule, owner: dict[int, int], stages: int) -> None:
    """Rule 3, first part. Gaps are found from sorted numbers, so a file naming stage
    10**9 fails at once instead of counting up to it."""
    absent = _first_gap(sorted(owner), stages)
    if absent is not None:
        raise _fail(
            schedule, f"no rank runs stage {absent}; every stage 0..{stages - 1} needs a rank", None
        )


def _every_micro_batch_runs(
    schedule: Schedule,
    cells: list[tuple[int, int, Action]],
    owner: dict[int, int],
    seen: dict[Action, tuple[int, int]],
    m: int,
) -> None:
    """Rule 3: every stage forwards every micro-batch. With a B or W of a missing one
    present, :func:`_every_action_has_its_partners` points at its cell instead."""
    forwards: dict[int, list[int]] = {stage: [] for stage in owner}
    for _, _, a in cells:
        if a.kind == F:
            forwards[a.stage].append(a.mb)
    stages = max(owner, default=-1) + 1
    for stage, mbs in sorted(forwards.items()):
        route = _route(schedule, stage, stages, m)
        k = _first_gap([mb - route.start for mb in sorted(mbs)], len(route))
        k = None if k is None else k + route.start
        if k is not None and all(Action(stage, kind, k) not in seen for kind in (B, W, BW)):
            raise _fail(
                schedule,
                f"rank {owner[stage]}: stage {stage} never processes micro-batch {k} "
                f"({Action(stage, F, k)} and its backward are missing)",
                None,
            )


def _one_kind_of_backward(
    schedule: Schedule,
    cells: list[tuple[int, int, Action]],
    seen: dict[Action, tuple[int, int]],
) -> None:
    """Rule 3: a (stage, micro-batch) runs its backward whole (BW) or split into B and W
    (Qi et al. 2024, sec. 2), not both."""
    for r, s, a in cells:
        if a.kind == BW and any(Action(a.stage, k, a.mb) in seen for k in (B, W)):
            raise _fail(
                schedule,
                f"rank {r}, step {s}: {a} is a full backward, but the same stage and "
                "micro-batch also has a split one (B and W); write B and W, or BW, not both",
                (r, s),
            )


def _every_action_has_its_partners(
    schedule: Schedule,
    cells: list[tuple[int, int, Action]],
    seen: dict[Action, tuple[int, int]],
) -> None:
    """Rule 3: F and its backward, B and its W. W's are looked at first, then B's, then
    F's: a missing action is reported at the cell that explains it best (the W without
    its B, the B without its W, the F with no backward at all)."""
    partners = {W: (B,), B: (F, W), BW: (F,), F: (B if schedule.split_backward else BW,)}
    order = (W, B, BW, F)
    for r, s, a in sorted(cells, key=lambda cell: order.index(cell[2].kind)):
        for kind in partners[a.kind]:
            partner = Action(a.stage, kind, a.mb)
            if a.kind == F and any(Action(a.stage, k, a.mb) in seen for k in (B, BW)):
                continue  # it has a backward, whole or split (the B was checked)
            if partner not in seen:
                raise _fail(
                    schedule,
                    f"rank {r}, step {s}: {a} has no {_NAMES[kind][4:]} ({partner} is "
                    f"missing); {_HINTS[(a.kind, kind)]}",
                    (r, s),
                )


def _needs_come_first_on_each_rank(schedule: Schedule, stages: int) -> None:
    """Rule 4: on one rank, nothing comes before what it needs from that same rank, and
    the halves of a pair do not need each other."""
    kinds = backward_kinds(schedule)
    for r, row in enumerate(schedule.ranks):
        step_of = {a: s for s, item in enumerate(row) if item is not None for a in parts(item)}
        for s, item in enumerate(row):
            if item is None:
                continue
            for a in parts(item):
                for d in needs(schedule, a, kinds):
                    if isinstance(item, Pair) and d in item.parts:
                        raise _fail(
                            schedule,
                            f"rank {r}, step {s}: the halves of {item} run at once, but "
                            f"{_NAMES[a.kind]} {a} needs {_NAMES[d.kind]} {d} first",
                            (r, s),
                        )
                    if step_of.get(d, -1) > s:
                        raise _fail(
                            schedule,
                            f"rank {r}, step {s}: {a} comes before {d} (step {step_of[d]}) on "
                            f"the same rank, but {_NAMES[a.kind]} needs {_NAMES[d.kind]} first",
                            (r, s),
                        )


def _no_cycle_of_waits(schedule: Schedule, owner: dict[int, int], stages: int) -> None:
    """Rule 5: placed in time with every action taking no time, no rank gets stuck."""
    timeline = run(schedule, 0, 0, 0)
    if not timeline.stuck:
        return
    finished = {a for row in timeline.rows for t in row for a in parts(t.action)}
    kinds = backward_kinds(schedule)
    waits = []
    for r, _, item in timeline.stuck:
        missing = [d for a in parts(item) for d in needs(schedule, a, kinds) if d not in finished]
        who = ", ".join(f"{d} on rank {owner[d.stage]}" for d in missing)
        waits.append(f"rank {r} waits at {item} for {who}")
    r0, s0, a0 = timeline.stuck[0]
    raise _fail(
        schedule,
        f"deadlock at rank {r0}, step {s0} ({a0}): the ranks wait for each other in a "
        "cycle: " + "; ".join(waits) + ". Reorder so that every action's inputs can be "
        "produced before it",
        (r0, s0),
    )


def _route(schedule: Schedule, stage: int, stages: int, m: int) -> range:
    """The micro-batches ``stage`` processes: all ``m``, or its direction's half."""
    per, d = m // schedule.directions, stage // (stages // schedule.directions)
    return range(d * per, (d + 1) * per) if schedule.directions > 1 else range(m)


def _first_gap(present: list[int], size: int) -> int | None:
    """The smallest number in ``0..size-1`` missing from the sorted ``present``."""
    for expected, value in enumerate(present):
        if value != expected:
            return expected
    return len(present) if len(present) < size else None
