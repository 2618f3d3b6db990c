"""ZB-V's cool-down equals the plain list scheduler its docstring describes."""

import pytest

from simulator.parallel.pipeline import zbv
from simulator.parallel.pipeline.actions import Action, B, F, Schedule, W, dependencies
from simulator.parallel.pipeline.timeline import run


def list_scheduled(p: int, m: int) -> list[list[Action]]:
    """The cool-down as the module docstring states it: at every time unit, each free
    rank runs its highest-priority ready action, scanning everything left."""
    stages = 2 * p
    rows = zbv._head(p, m)
    placed = run(Schedule("zbv", tuple(map(tuple, rows)), stages, m))
    finish = {t.action: t.end for row in placed.rows for t in row}
    free = [row[-1].end if row else 0 for row in placed.rows]
    left = [
        {Action(s, k, mb) for s in (r, stages - 1 - r) for k in (F, B, W) for mb in range(m)}
        - set(row)
        for r, row in enumerate(rows)
    ]
    now = min(free)
    while any(left):
        for r in range(p):
            if free[r] > now or not left[r]:
                continue
            ready = [
                a
                for a in left[r]
                if all(finish.get(d, now + 1) <= now for d in dependencies(a, stages))
            ]
            if ready:
                a = min(ready, key=zbv._priority)
                rows[r].append(a)
                left[r].remove(a)
                finish[a] = free[r] = now + 1
        now += 1
    return rows


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8])
def test_the_cool_down_is_the_list_schedule(p: int) -> None:
    for m in [*range(1, 2 * p + 3), 4 * p + 1]:
        assert zbv._zbv(p, m, 2) == list_scheduled(p, m), (p, m)
