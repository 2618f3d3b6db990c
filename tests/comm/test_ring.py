"""Ring algorithms: numerics against numpy, timing against the alpha-beta closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import comm
from simulator.comm import closed_forms, ring
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import ALPHA, BETA, arrays, assert_results, check_plan, simulate, switch

OPS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all", "send_recv")


@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(OPS),
    p=st.integers(1, 9),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_results_match_numpy_for_any_group_and_size(op: str, p: int, n: int, seed: int) -> None:
    xs = arrays(p, n, seed)
    results, plan = comm.collective(op, xs, "ring")
    assert_results(op, results, xs)
    check_plan(plan)


def test_all_reduce_keeps_the_shape_and_leaves_inputs_alone() -> None:
    xs = arrays(3, 0, seed=1, shape=(4, 5))
    before = [x.copy() for x in xs]
    results, _ = comm.all_reduce(xs, "ring")
    assert_results("all_reduce", results, before)
    for x, b in zip(xs, before, strict=True):
        np.testing.assert_array_equal(x, b)


def test_all_reduce_every_message_is_a_chunk_and_waits_for_the_previous_step() -> None:
    p, n = 4, 8
    _, plan = comm.all_reduce([ShapeArray((n,), "float32")] * p, "ring")
    assert plan.steps == 2 * (p - 1)
    assert len(plan.transfers) == 2 * (p - 1) * p
    for t in plan.transfers:
        assert t.dst == (t.src + 1) % p
        assert t.nbytes == n // p * 4
        if t.step == 0:
            assert t.deps == ()
        else:
            (dep,) = t.deps
            assert plan.transfers[dep].step == t.step - 1
            assert plan.transfers[dep].dst == t.src


def test_odd_sizes_split_into_chunks_one_element_apart() -> None:
    _, plan = ring.reduce_scatter([ShapeArray((10,), "float32")] * 4)
    assert sorted({t.nbytes for t in plan.transfers}) == [8, 12]


@pytest.mark.parametrize("p", [2, 3, 4, 5, 8])
def test_all_reduce_time_is_the_closed_form(p: int) -> None:
    n = 4 * p * 1000
    _, plan = comm.all_reduce([ShapeArray((n // 4,), "float32")] * p, "ring")
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx(closed_forms.ring_all_reduce(p, n, ALPHA, BETA), rel=1e-9)
    assert end == pytest.approx(2 * (p - 1) * ALPHA + 2 * (p - 1) / p * n * BETA, rel=1e-9)


@pytest.mark.parametrize("p", [2, 3, 5, 8])
@pytest.mark.parametrize("op", ["reduce_scatter", "all_gather", "all_to_all"])
def test_one_phase_time_is_the_closed_form(op: str, p: int) -> None:
    n = 4 * p * 250  # the whole array (all-gather: the result; all-to-all: one rank's buffer)
    piece = n // 4 // p if op == "all_gather" else n // 4
    _, plan = comm.collective(op, [ShapeArray((piece,), "float32")] * p, "ring")
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx((p - 1) * ALPHA + (p - 1) / p * n * BETA, rel=1e-9)


def test_send_recv_costs_one_message() -> None:
    _, plan = comm.send_recv([ShapeArray((1000,), "float32")] * 6)
    end, _ = simulate(plan, switch(6))
    assert end == pytest.approx(ALPHA + 4000 * BETA, rel=1e-9)
