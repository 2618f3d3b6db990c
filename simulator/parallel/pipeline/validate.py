"""Check a schedule before it runs, and explain what is wrong on the grid.

The rules, for ``S`` stages and ``m`` micro-batches, checked in this order so
that each mistake is reported by the rule that explains it best:

1. every action names a stage in ``0..S-1`` and a micro-batch in ``0..m-1``,
   and every stage runs on exactly one rank;
2. no action appears twice;
3. every stage runs on some rank, and every ``(stage, micro-batch)`` has one
   ``F`` and one full backward ``BW`` -- or, when the schedule splits
   backward (any ``B`` or ``W`` in it means it does; Qi et al. 2024, sec. 2),
   one ``B`` and one ``W``; one schedule does not mix the two. A missing
   action is reported at the cell of its partner: the F without a backward,
   the W without its B;
4. on one rank, no action comes before something it needs from that rank
   (``B`` before its ``F``, ``W`` before its ``B``, or a stage's work before
   the same rank's work on the stage feeding it);
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
from .actions import BW, Action, B, F, Schedule, W, dependencies
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
    ranks = schedule.ranks
    return [(r, s, a) for r, row in enumerate(ranks) for s, a in enumerate(row) if a is not None]


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
    _backward_split_everywhere_or_nowhere(schedule, cells)
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
    for stage, mbs in sorted(forwards.items()):
        k = _first_gap(sorted(mbs), m)
        if k is not None and all(Action(stage, kind, k) not in seen for kind in (B, W, BW)):
            raise _fail(
                schedule,
                f"rank {owner[stage]}: stage {stage} never processes micro-batch {k} "
                f"({Action(stage, F, k)} and its backward are missing)",
                None,
            )


def _backward_split_everywhere_or_nowhere(
    schedule: Schedule, cells: list[tuple[int, int, Action]]
) -> None:
    """Rule 3: a schedule that splits backward into B and W (Qi et al. 2024, sec. 2) has
    no full backward BW."""
    if not schedule.split_backward:
        return
    mixed = next(((r, s, a) for r, s, a in cells if a.kind == BW), None)
    if mixed is not None:
        r, s, a = mixed
        raise _fail(
            schedule,
            f"rank {r}, step {s}: {a} is a full backward, but the schedule splits the "
            "backward into B and W elsewhere; write B and W for every backward, or BW for "
            "every one",
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
            if partner not in seen:
                raise _fail(
                    schedule,
                    f"rank {r}, step {s}: {a} has no {_NAMES[kind][4:]} ({partner} is "
                    f"missing); {_HINTS[(a.kind, kind)]}",
                    (r, s),
                )


def _needs_come_first_on_each_rank(schedule: Schedule, stages: int) -> None:
    """Rule 4: on one rank, nothing comes before what it needs from that same rank."""
    for r, row in enumerate(schedule.ranks):
        step_of = {a: s for s, a in enumerate(row) if a is not None}
        for s, a in enumerate(row):
            if a is None:
                continue
            for d in dependencies(a, stages):
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
    finished = {t.action for row in timeline.rows for t in row}
    waits = []
    for r, _, action in timeline.stuck:
        missing = [d for d in dependencies(action, stages) if d not in finished]
        who = ", ".join(f"{d} on rank {owner[d.stage]}" for d in missing)
        waits.append(f"rank {r} waits at {action} for {who}")
    r0, s0, a0 = timeline.stuck[0]
    raise _fail(
        schedule,
        f"deadlock at rank {r0}, step {s0} ({a0}): the ranks wait for each other in a "
        "cycle: " + "; ".join(waits) + ". Reorder so that every action's inputs can be "
        "produced before it",
        (r0, s0),
    )


def _first_gap(present: list[int], size: int) -> int | None:
    """The smallest number in ``0..size-1`` missing from the sorted ``present``."""
    for expected, value in enumerate(present):
        if value != expected:
            return expected
    return len(present) if len(present) < size else None
