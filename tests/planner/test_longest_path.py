"""The recorded walk of a schedule gives the ends ``timeline.run`` gives, bit for bit."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from simulator.errors import SimulatorError
from simulator.parallel.pipeline import Schedule, get_schedule, schedule_names
from simulator.parallel.pipeline.actions import Action, F
from simulator.parallel.pipeline.timeline import run
from simulator.planner.longest_path import INDEX, LongestPath

TIME = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.sampled_from(schedule_names()),
    st.sampled_from([(2, 4), (3, 6), (4, 8), (4, 12)]),
    st.data(),
)
def test_the_recorded_walk_ends_where_the_timeline_does(name, sizes, data) -> None:
    p, m = sizes
    info = get_schedule(name)
    try:
        schedule = info(p, m, 2 if info.chunked else 1)
    except SimulatorError:
        assume(False)
    stages = schedule.num_stages
    times = [tuple(data.draw(TIME) for _ in range(4)) for _ in range(stages)]
    comm = data.draw(st.floats(min_value=0.0, max_value=0.1))
    timeline = run(schedule, duration_of=lambda a: times[a.stage][INDEX[a.kind]], comm=comm)
    expected = [row[-1].end if row else None for row in timeline.rows]
    path = LongestPath.of(schedule)
    assert path.ends(times, comm) == expected  # the same floats, not nearly
    assert path.ends(times, comm) == expected  # and again: it keeps no state


def test_a_schedule_that_cannot_finish_keeps_what_it_can_place() -> None:
    # rank 1's forward of micro-batch 1 waits for one rank 0 never runs: rank 1 places
    # nothing, rank 0 its own forward
    schedule = Schedule("stuck", ((Action(0, F, 0),), (Action(1, F, 1),)), 2, 2)
    times = [(1.0, 2.0, 3.0, 5.0)] * 2
    assert LongestPath.of(schedule).ends(times, 0.5) == [1.0, None]
    assert [r[-1].end if r else None for r in run(schedule, 1.0).rows] == [1.0, None]
