"""Check a schedule before it runs, and explain what is wrong on the grid.

The rules (for ``S`` stages and ``m`` micro-batches):

1. every stage runs on exactly one rank;
2. every ``(stage, micro-batch)`` has exactly one ``F`` and one ``B``, and,
   when the schedule splits backward, exactly one ``W``;
3. it can run: each action waits only for actions that come earlier in some
   order. ``F`` of stage ``s`` needs ``F`` of ``s-1``; ``B`` of ``s`` needs
   ``B`` of ``s+1`` (the last stage needs its own ``F``); ``W`` needs the ``B``
   of the same stage and micro-batch; each rank runs its list in order. Sends
   never block (they are buffered), so the only way to get stuck is a cycle of
   waits, which is found by running the schedule with every action taking no
   time.

Errors name the rank and the step and show the rank x step grid with the
offending cell marked ``>like this<``.
"""

from __future__ import annotations

from collections import Counter

from ...errors import ScheduleError
from .actions import Action, Schedule


def _fail(schedule: Schedule, message: str, cell: tuple[int, int] | None) -> ScheduleError:
    return ScheduleError(f"schedule {schedule.name!r}: {message}\n{schedule.grid(mark=cell)}")


def _where(schedule: Schedule, action: Action) -> tuple[int, int] | None:
    for r, row in enumerate(schedule.ranks):
        for s, a in enumerate(row):
            if a == action:
                return r, s
    return None


def dependencies(action: Action, num_stages: int, split: bool) -> list[Action]:
    """The actions ``action`` needs finished first (across ranks and on its own)."""
    s, k = action.stage, action.mb
    if action.kind == "F":
        return [Action(s - 1, "F", k)] if s > 0 else []
    if action.kind == "B":
        upstream = Action(s + 1, "B", k) if s < num_stages - 1 else None
        return [Action(s, "F", k)] + ([upstream] if upstream else [])
    return [Action(s, "B", k)]


def validate(
    schedule: Schedule, num_stages: int | None = None, microbatches: int | None = None
) -> None:
    """Raise :class:`ScheduleError` unless ``schedule`` is complete and can run.

    ``num_stages`` and ``microbatches``, when given, are what the strategy
    expects; the schedule must cover exactly those.
    """
    stages = schedule.num_stages if num_stages is None else num_stages
    m = schedule.microbatches if microbatches is None else microbatches
    split = schedule.split_backward

    # 1. stages and micro-batches in range, each stage on exactly one rank.
    owner: dict[int, int] = {}
    for r, row in enumerate(schedule.ranks):
        for s, a in enumerate(row):
            if a is None:
                continue
            if a.stage >= stages:
                raise _fail(
                    schedule,
                    f"rank {r}, step {s}: {a} names stage {a.stage} but the "
                    f"model has {stages} stages (0..{stages - 1})",
                    (r, s),
                )
            if a.mb >= m:
                raise _fail(
                    schedule,
                    f"rank {r}, step {s}: {a} names micro-batch {a.mb} but "
                    f"the step has {m} micro-batches (0..{m - 1})",
                    (r, s),
                )
            if owner.setdefault(a.stage, r) != r:
                raise _fail(
                    schedule,
                    f"rank {r}, step {s}: stage {a.stage} also runs on rank "
                    f"{owner[a.stage]}; each stage must live on exactly one rank",
                    (r, s),
                )

    # 2. exactly one of each action.
    counts = Counter(a for row in schedule.ranks for a in row if a is not None)
    for action, n in counts.items():
        if n > 1:
            raise _fail(
                schedule,
                f"{action} appears {n} times; each action must appear once",
                _where(schedule, action),
            )
    kinds = ("F", "B", "W") if split else ("F", "B")
    for stage in range(stages):
        for k in range(m):
            for kind in kinds:
                need = Action(stage, kind, k)
                if need not in counts:
                    rank = owner.get(stage)
                    place = f"rank {rank}" if rank is not None else "no rank"
                    hint = " (a schedule with W actions needs one W per B)" if kind == "W" else ""
                    raise _fail(
                        schedule,
                        f"{need} is missing: stage {stage} ({place}) never "
                        f"runs {_NAMES[kind]} of micro-batch {k}{hint}",
                        None,
                    )

    # 3. on one rank, an action may not come before what it needs from that rank.
    for r, row in enumerate(schedule.ranks):
        step_of = {a: s for s, a in enumerate(row) if a is not None}
        for s, a in enumerate(row):
            if a is None:
                continue
            for d in dependencies(a, stages, split):
                if step_of.get(d, -1) > s:
                    raise _fail(
                        schedule,
                        f"rank {r}, step {s}: {a} comes before {d} (step "
                        f"{step_of[d]}) on the same rank, but {_NAMES[a.kind]} needs "
                        f"{_NAMES[d.kind]} first",
                        (r, s),
                    )

    # 4. run it with zero-time actions to find waits that can never end.
    done: set[Action] = set()
    position = [0] * schedule.num_ranks
    rows = [[(s, a) for s, a in enumerate(row) if a is not None] for row in schedule.ranks]
    progress = True
    while progress:
        progress = False
        for r, row in enumerate(rows):
            while position[r] < len(row):
                _, action = row[position[r]]
                if any(d not in done for d in dependencies(action, stages, split)):
                    break
                done.add(action)
                position[r] += 1
                progress = True
    stuck = [(r, rows[r][position[r]]) for r in range(len(rows)) if position[r] < len(rows[r])]
    if stuck:
        waits = []
        for r, (_, action) in stuck:
            missing = [d for d in dependencies(action, stages, split) if d not in done]
            who = ", ".join(f"{d} on rank {owner[d.stage]}" for d in missing)
            waits.append(f"rank {r} waits at {action} for {who}")
        r0, (s0, a0) = stuck[0]
        raise _fail(
            schedule,
            f"deadlock at rank {r0}, step {s0} ({a0}): the waits form a cycle: " + "; ".join(waits),
            (r0, s0),
        )


_NAMES = {"F": "the forward", "B": "the backward", "W": "the weight gradient"}
