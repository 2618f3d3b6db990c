"""The closed forms of :mod:`simulator.planner.schedule_facts` against the built schedules.

Every fact the planner reads in closed form -- the stash profile, the stage
placement, each rank's first and last action, the number of actions -- must be
what the registry's schedule, built and walked, says: the memory estimate and
the step-time bound read them, and the plan must not change with the shortcut.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.parallel.pipeline import get_schedule
from simulator.parallel.pipeline.schedules import schedule_names
from simulator.planner.schedule_facts import CLOSED_FORMS, facts_of_schedule


def _same(name: str, p: int, m: int, v: int) -> None:
    built = facts_of_schedule(get_schedule(name)(p, m, v))
    closed = CLOSED_FORMS[name](p, m, v)
    assert closed == built
    assert list(closed.rank_of.items()) == list(built.rank_of.items())  # the same order too


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["naive", "gpipe", "1f1b", "zb-h1", "zb-h2"]),
    p=st.integers(1, 9),
    m=st.integers(1, 30),
)
def test_one_chunk_schedules_in_closed_form_are_the_built_ones(name, p, m):
    _same(name, p, m, 1)


@settings(max_examples=60, deadline=None)
@given(p=st.integers(1, 7), groups=st.integers(1, 6), v=st.integers(1, 4))
def test_interleaved_in_closed_form_is_the_built_one(p, groups, v):
    _same("interleaved", p, p * groups, v)  # its rule: m a multiple of p


@settings(max_examples=25, deadline=None)
@given(p=st.integers(1, 10), extra=st.integers(0, 30))
def test_zbv_past_2p_micro_batches_is_the_built_one(p, extra):
    _same("zbv", p, max(1, 2 * p - 3) + extra, 2)


def test_every_closed_form_is_a_registry_schedule_and_long_ones_agree():
    # past a few periods of p v the interleaved peaks repeat: a long pipeline agrees too
    assert set(CLOSED_FORMS) <= set(schedule_names())
    _same("interleaved", 4, 96, 3)
    _same("zb-h2", 8, 96, 1)
    _same("zbv", 16, 48, 2)
