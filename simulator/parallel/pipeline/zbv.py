"""ZB-V: the V-shape zero-bubble schedule, two chunks per rank.

Qi, Wan, Agrawal, Huang and Lin 2024, "Pipeline Parallelism with Controllable
Memory" (NeurIPS 2024), which builds schedules from a repeated building block
and names the zero-bubble V-shape member ZB-V; it ships as the ``zbv``
schedule of the authors' zero-bubble repository (sail-sg,
zero-bubble-pipeline-parallelism).

**Placement.** The model is cut into ``2p`` chunks; rank ``r`` holds chunk
``r`` and chunk ``2p-1-r``. A micro-batch's forward runs down the ranks
(chunks ``0..p-1`` on ranks ``0..p-1``), turns on the last rank (chunks
``p-1`` and ``p`` are both there, so that hand-off is local) and comes back up
(chunk ``2p-1``, with the loss, is on rank 0). The backward retraces the V.
The first rank therefore gets its first backward after ``2p`` forward chunks
instead of waiting for the whole pipeline twice, and every rank does the
same work per micro-batch: ``F`` and ``B`` and ``W`` of two chunks.

**Order on rank r**, writing ``a`` for chunk ``r`` and ``c`` for chunk
``2p-1-r`` (micro-batch numbers count up separately per chunk and kind):

1. ``2(p-r-1)`` forwards of ``a``;
2. ``r+1`` times: forward ``a``, forward ``c`` -- the rank is busy for the
   ``2p`` time units before its first backward arrives;
3. ``p-r-1`` times: ``B`` of ``c``, ``W`` of ``c``, forward ``c``;
4. steady state, ``m-2p+r+1`` times: forward ``a``, ``B c``, ``W c``,
   forward ``c``, ``B a``, ``W a``;
5. cool-down: the remaining actions are list-scheduled on the unit-time
   timeline (every action one unit, free communication): whenever the rank is
   free it runs a ready forward, else a ready B (lowest micro-batch first),
   else a pending W -- so the W's fill the holes of the drain, as in ZB-H2's
   parallelogram.

**Rules and properties.** ``chunks`` must be 2. Any ``m >= 1`` gives a valid
schedule (for ``m < 2p-1`` phases 1-4 are cut to the micro-batches that
exist). With ``m >= 2p-1``, equal chunk times ``T_F = T_B = T_W`` and free
communication no rank idles between its first and last action (checked on
the unit-time timeline for ``p <= 16`` and in the simulator's tests); the
step's bubble is only the ``(p-1) T`` by which the last rank starts later.
There is no closed form for other times, so the bubble formula is that under
those conditions and None otherwise.
A stash lives from its F to its W: the first rank holds at most ``2p+1``
chunk stashes, i.e. ``p + 1/2`` stages' worth, half a stage more than 1F1B's
first rank (the paper counts the V-shape at 1F1B's memory); for large ``p``
some middle ranks hold one or two more during the cool-down.
"""

from __future__ import annotations

import heapq
from math import isclose

from ...errors import LayoutError
from .actions import Action, B, F, Kind, Schedule, W, dependencies
from .schedules import ScheduleInfo, bubble_from_time, register
from .timeline import run


def _rules(p: int, m: int, v: int) -> None:
    if v != 2:
        raise LayoutError(
            f"zbv places two chunks on every rank (a V: rank r holds chunks r and 2p-1-r); "
            f"set chunks = 2 (got {v})"
        )


def _head(p: int, m: int) -> list[list[Action]]:
    """Phases 1-4 of the module docstring, cut to micro-batches below ``m``."""
    full = max(m, 2 * p - 1)
    rows = []
    for r in range(p):
        phases = (
            ["Fa"] * 2 * (p - r - 1)
            + ["Fa", "Fc"] * (r + 1)
            + ["Bc", "Wc", "Fc"] * (p - r - 1)
            + ["Fa", "Bc", "Wc", "Fc", "Ba", "Wa"] * (full - 2 * p + r + 1)
        )
        chunk = {"a": r, "c": 2 * p - 1 - r}
        count = dict.fromkeys(phases, 0)
        row = []
        for name in phases:
            row.append(Action(chunk[name[1]], Kind(name[0]), count[name]))
            count[name] += 1
        rows.append([a for a in row if a.mb < m])
    return rows


def _priority(a: Action) -> tuple[int, int, int]:
    # forwards keep the V fed, then backwards (oldest first), W only to fill a hole
    if a.kind == W:
        return (2, a.stage, a.mb)
    return (0 if a.kind == F else 1, a.mb, a.stage)


def _zbv(p: int, m: int, v: int) -> list[list[Action]]:
    stages = 2 * p
    rows = _head(p, m)
    placed = run(Schedule("zbv", tuple(map(tuple, rows)), stages, m))
    finish = {t.action: t.end for row in placed.rows for t in row}
    free = [row[-1].end if row else 0 for row in placed.rows]
    # the cool-down, list-scheduled: an action becomes ready at the time its last
    # dependency finishes; each rank keeps the actions not yet ready in a heap by that
    # time and the ready ones in a heap by priority, so every step looks at what changed
    left = [0] * p
    waiting: list[list[tuple[int, tuple, Action]]] = [[] for _ in range(p)]
    ready: list[list[tuple[tuple, Action]]] = [[] for _ in range(p)]
    unplaced: dict[Action, int] = {}
    dependents: dict[Action, list[Action]] = {}
    rank_of: dict[Action, int] = {}
    for r, row in enumerate(rows):
        done = set(row)
        for s in (r, stages - 1 - r):
            for k in (F, B, W):
                for mb in range(m):
                    a = Action(s, k, mb)
                    if a in done:
                        continue
                    left[r] += 1
                    rank_of[a] = r
                    needs = dependencies(a, stages)
                    unplaced[a] = sum(d not in finish for d in needs)
                    for d in needs:
                        if d not in finish:
                            dependents.setdefault(d, []).append(a)
                    if not unplaced[a]:
                        at = max((finish[d] for d in needs), default=0)
                        heapq.heappush(waiting[r], (at, _priority(a), a))
    now = min(free)
    while any(left):
        for r in range(p):
            if free[r] > now or not left[r]:
                continue
            pending, mine = waiting[r], ready[r]
            while pending and pending[0][0] <= now:
                _, key, a = heapq.heappop(pending)
                heapq.heappush(mine, (key, a))
            if not mine:
                continue
            _, a = heapq.heappop(mine)
            rows[r].append(a)
            left[r] -= 1
            finish[a] = free[r] = now + 1
            for after in dependents.pop(a, ()):
                unplaced[after] -= 1
                if not unplaced[after]:
                    at = max(finish[d] for d in dependencies(after, stages))
                    heapq.heappush(waiting[rank_of[after]], (at, _priority(after), after))
        now += 1
    return rows


def zbv_bubble(p: int, m: int, v: int, t_f: float, t_b: float, t_w: float) -> float | None:
    """For ``m >= 2p-1`` with ``T_F = T_B = T_W = T`` (per chunk): bubble time
    ``(p-1) T``, else None.

    Every rank's span is busy (the V has no bubble, Qi et al. 2024, sec. 4),
    but the last rank's first forward starts ``(p-1) T`` after the first
    rank's and it ends the step that much later; every rank computes ``2 m
    (T_F+T_B+T_W)`` (two chunks).
    """
    if m >= 2 * p - 1 and isclose(t_f, t_b, rel_tol=1e-9) and isclose(t_b, t_w, rel_tol=1e-9):
        return bubble_from_time(2 * m, t_f, t_b, t_w, (p - 1) * t_f)
    return None


register(
    ScheduleInfo(
        "zbv",
        _zbv,
        "V-shape zero bubble, rank r holds chunks r and 2p-1-r (Qi et al. 2024, ZB-V)",
        split_backward=True,
        chunked=True,
        bubble=zbv_bubble,
        rules=_rules,
        checked=True,
    )
)
