"""The search space: every layout uses the devices asked for, once, and honours the limits."""

from dataclasses import astuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import ScenarioError
from simulator.parallel.strategy import Strategy
from simulator.planner.space import SearchSpace, divisors, layout_keys, layout_name, layouts

SMALL = SearchSpace(recompute=("none", "full"), zero=(0, 1), max_chunks=2)


@given(n=st.integers(1, 400))
def test_divisors_are_every_divisor_once(n):
    assert divisors(n) == [d for d in range(1, n + 1) if n % d == 0]


@settings(max_examples=40, deadline=None)
@given(devices=st.sampled_from([1, 2, 4, 6, 8, 12, 16]), batch=st.sampled_from([4, 8, 12, 16]))
def test_every_layout_uses_exactly_the_devices_and_splits_the_batch(devices, batch):
    found = list(layouts(devices, batch, SMALL))
    for s in found:
        assert s.dp * s.tp * s.pp == devices
        assert batch % (s.dp * s.microbatches) == 0
    # each layout once: no two share their keys, and names tell them apart
    assert len({tuple(layout_keys(s).values()) for s in found}) == len(found)
    named = [layout_name(s) for s in found]
    assert len(set(named)) == len(named)


@settings(max_examples=25, deadline=None)
@given(devices=st.sampled_from([4, 8, 16]), batch=st.sampled_from([8, 16]))
def test_equivalent_layouts_are_left_out(devices, batch):
    for s in layouts(devices, batch, SMALL):
        if s.pp == 1:
            assert (s.schedule, s.chunks) == (Strategy().schedule, 1)
        if s.dp == 1:
            assert s.zero == 0
        if s.tp == 1:
            assert not s.sequence_parallel


def test_limits_and_fixed_keys_narrow_the_search():
    space = SearchSpace(max_tp=2, max_pp=2, schedules=("interleaved",), fixed={"zero": 1, "dp": 2})
    found = list(layouts(8, 16, space))
    assert found
    assert all(s.tp <= 2 and s.pp <= 2 and s.dp == 2 and s.zero == 1 for s in found)
    assert {s.schedule for s in found if s.pp > 1} == {"interleaved"}
    assert {s.chunks for s in found if s.pp > 1} == {2, 3, 4}  # interleaved takes chunks


def test_deepspeeds_schedule_is_tried_only_when_named():
    # never faster than 1f1b (the same order, plus blocking sends): not searched by default
    default = {s.schedule for s in layouts(4, 8, SearchSpace(max_chunks=2)) if s.pp > 1}
    assert "1f1b" in default and "deepspeed" not in default
    named = {s.schedule for s in layouts(4, 8, SearchSpace(schedules=("deepspeed",))) if s.pp > 1}
    assert named == {"deepspeed"}


def test_a_fixed_micro_batch_size_sets_the_micro_batches():
    found = list(layouts(4, 16, SearchSpace(fixed={"micro_batch_size": 2, "tp": 1})))
    assert {(s.dp, s.microbatches) for s in found} == {(1, 8), (2, 4), (4, 2)}


def test_mesh_orders_are_tried_once_per_distinct_mesh():
    orders = {s.order for s in layouts(4, 4, SearchSpace(fixed={"dp": 1, "tp": 4}))}
    assert len(orders) == 1  # only tp > 1: every order places the ranks alike
    two = {s.order for s in layouts(4, 4, SearchSpace(fixed={"dp": 2, "tp": 2, "pp": 1}))}
    assert len(two) == 2  # tp before dp, or dp before tp


def test_base_keys_are_kept():
    base = Strategy(partition="uniform", bucket_mb=25.0)
    assert all((s.partition, s.bucket_mb) == ("uniform", 25.0) for s in layouts(4, 8, SMALL, base))


@pytest.mark.parametrize(
    ("space", "error", "message"),
    [
        (dict(fixed={"bucket_mb": 1}), ScenarioError, "cannot fix bucket_mb"),
        (dict(schedules=("zigzag",)), ScenarioError, "unknown schedule 'zigzag'"),
        (dict(orders=("tp-dp",)), Exception, "must name each of tp, dp and pp"),
    ],
)
def test_bad_spaces_are_one_clear_error(space, error, message):
    with pytest.raises(error, match=message):
        SearchSpace(**space)


def test_layout_names_read_as_the_layout():
    s = Strategy(
        dp=2,
        tp=8,
        pp=4,
        microbatches=16,
        schedule="interleaved",
        chunks=2,
        recompute="full",
        sequence_parallel=True,
        zero=1,
        order="tp-pp-dp",
    )
    assert layout_name(s) == "dp2-tp8-pp4-interleavedx2-m16-full-sp-zero1-by-tp.pp.dp"
    assert astuple(s) != astuple(Strategy())
