"""The unit-time timeline: exact bubbles, the aligned grid, stuck ranks."""

from fractions import Fraction

import pytest

from simulator.parallel.pipeline import Action, Schedule, get_schedule, run


@pytest.mark.parametrize(("p", "m"), [(2, 1), (3, 3), (4, 8), (5, 2)])
def test_flush_schedules_have_the_textbook_bubble(p: int, m: int) -> None:
    # Narayanan et al. 2021, sec. 2.2.1: (p-1)/(m+p-1) for GPipe and 1F1B
    for name in ("gpipe", "1f1b"):
        timeline = run(get_schedule(name)(p, m), Fraction(1), Fraction(2), Fraction(1))
        assert timeline.bubble_fraction() == Fraction(p - 1, m + p - 1)
        assert not timeline.stuck


def test_grid_is_time_aligned_with_idle_cells_and_fused_backwards() -> None:
    grid = run(get_schedule("1f1b")(2, 2)).grid().splitlines()
    cells = [line.split()[2:] for line in grid[1:]]
    # fused backward = B + W = two units; rank 0 idles while rank 1 works
    assert cells[0] == ["0F0", "0F1", ".", ".", "0BW0", "-", ".", "0BW1", "-"]
    assert cells[1] == [".", "1F0", "1BW0", "-", "1F1", "1BW1", "-", ".", "."]


def test_grid_unit_divides_every_duration() -> None:
    # a half-unit W fused into the backward (1.5 units) makes a column half a unit
    lines = run(get_schedule("1f1b")(2, 2), 1, 1, Fraction(1, 2)).grid().splitlines()
    assert lines[0] == "(one column = 1/2 time units)"
    assert lines[2].split()[2:6] == ["0F0", "-", "0F1", "-"]
    assert lines[3].split()[6:9] == ["1BW0", "-", "-"]


def test_a_cycle_leaves_ranks_stuck_where_they_wait() -> None:
    f0, f1 = Action(0, "F", 0), Action(1, "F", 0)
    b0, b1 = Action(0, "BW", 0), Action(1, "BW", 0)
    # rank 0 wants stage 1's gradient before it has sent the activation
    schedule = Schedule("cycle", ((b0, f0), (f1, b1)), 2, 1)
    timeline = run(schedule, 0, 0, 0)
    assert [(r, step, a) for r, step, a in timeline.stuck] == [(0, 0, b0), (1, 0, f1)]


def test_communication_delays_only_cross_rank_dependencies() -> None:
    schedule = get_schedule("1f1b")(2, 1)
    timeline = run(schedule, 1, 1, 0, comm=Fraction(1, 2))
    ends = {t.action: t.end for row in timeline.rows for t in row}
    # F0 on rank 0 ends at 1, arrives at 1.5; B on rank 1 ends at 3.5, arrives at 4
    assert ends[Action(1, "F", 0)] == Fraction(5, 2)
    assert ends[Action(0, "BW", 0)] == 5
