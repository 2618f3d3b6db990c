"""Binomial trees: numerics for any root and group size, ceil(lg p) rounds of whole arrays."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import comm
from simulator.comm import closed_forms
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import ALPHA, BETA, arrays, assert_results, check_plan, simulate, switch


@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(["broadcast", "reduce", "all_reduce"]),
    p=st.integers(1, 11),
    n=st.integers(0, 30),
    data=st.data(),
)
def test_results_match_numpy_for_any_root(op: str, p: int, n: int, data: st.DataObject) -> None:
    root = data.draw(st.integers(0, p - 1)) if op != "all_reduce" else 0
    xs = arrays(p, n, seed=data.draw(st.integers(0, 2**16)))
    results, plan = comm.collective(op, xs, "tree", root=root)
    assert_results(op, results, xs, root)
    check_plan(plan)


def test_broadcast_doubles_the_ranks_holding_the_data_each_round() -> None:
    _, plan = comm.broadcast([ShapeArray((4,), "float32")] * 8, root=3, algorithm="tree")
    by_step = [sorted((t.src, t.dst) for t in plan.transfers if t.step == k) for k in range(3)]
    assert by_step == [[(3, 4)], [(3, 5), (4, 6)], [(3, 7), (4, 0), (5, 1), (6, 2)]]


def test_broadcast_results_are_separate_buffers() -> None:
    xs = arrays(4, 5, seed=2)
    results, _ = comm.broadcast(xs, root=1, algorithm="tree")
    results[0][0] = 99.0
    assert results[2][0] == xs[1][0] != 99.0


@pytest.mark.parametrize("p", [2, 3, 4, 5, 6, 8, 11, 16])
@pytest.mark.parametrize("op", ["broadcast", "reduce"])
def test_time_is_ceil_lg_p_whole_messages(op: str, p: int) -> None:
    n = 4000
    _, plan = comm.collective(op, [ShapeArray((n // 4,), "float32")] * p, "tree", root=p - 1)
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx(math.ceil(math.log2(p)) * (ALPHA + n * BETA), rel=1e-9)
    assert end == pytest.approx(closed_forms.binomial_broadcast(p, n, ALPHA, BETA), rel=1e-9)


@pytest.mark.parametrize("p", [3, 8])
def test_all_reduce_is_a_reduce_then_a_broadcast(p: int) -> None:
    n = 4000
    _, plan = comm.all_reduce([ShapeArray((n // 4,), "float32")] * p, "tree")
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx(closed_forms.binomial_all_reduce(p, n, ALPHA, BETA), rel=1e-9)
