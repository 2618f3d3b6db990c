"""Recursive doubling/halving and Rabenseifner: power-of-two groups, lg p rounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import LayoutError, comm
from simulator.comm import closed_forms
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import ALPHA, BETA, arrays, assert_results, check_plan, simulate, switch

CASES = [
    ("all_reduce", "recursive"),
    ("all_reduce", "rabenseifner"),
    ("reduce_scatter", "recursive"),
    ("all_gather", "recursive"),
]


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(CASES),
    p=st.sampled_from([1, 2, 4, 8, 16]),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_results_match_numpy(case: tuple[str, str], p: int, n: int, seed: int) -> None:
    op, algorithm = case
    xs = arrays(p, n, seed)
    results, plan = comm.collective(op, xs, algorithm)
    assert_results(op, results, xs)
    check_plan(plan)


def test_doubling_all_reduce_gives_bitwise_identical_results() -> None:
    results, _ = comm.all_reduce(arrays(8, 33, seed=5), "recursive")
    assert all((r == results[0]).all() for r in results)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("p", [3, 6, 12])
def test_other_group_sizes_are_refused_with_the_fix(case: tuple[str, str], p: int) -> None:
    op, algorithm = case
    with pytest.raises(LayoutError, match=rf"power-of-two group size .*got {p}; .*ring"):
        comm.collective(op, [ShapeArray((8,), "float32")] * p, algorithm)


def test_partners_are_at_distance_one_two_four() -> None:
    _, plan = comm.all_reduce([ShapeArray((4,), "float32")] * 8, "recursive")
    for t in plan.transfers:
        assert t.src ^ t.dst == 1 << t.step
        # it waits for what it received in the previous round (and, through its own
        # previous message, for everything before)
        assert [plan.transfers[d].step for d in t.deps] == ([t.step - 1] if t.step else [])


def test_halving_sends_half_then_a_quarter() -> None:
    _, plan = comm.reduce_scatter([ShapeArray((64,), "float32")] * 8, "recursive")
    assert [(t.src ^ t.dst, t.nbytes) for t in plan.transfers if t.src == 0] == [
        (4, 128),
        (2, 64),
        (1, 32),
    ]


def _time(op: str, algorithm: str, p: int, n: int) -> float:
    piece = n // 4 // p if op == "all_gather" else n // 4
    _, plan = comm.collective(op, [ShapeArray((piece,), "float32")] * p, algorithm)
    return simulate(plan, switch(p))[0]


@pytest.mark.parametrize("p", [2, 4, 8, 16])
def test_times_are_the_closed_forms(p: int) -> None:
    n, lg = 4 * p * 100, math.log2(p)
    assert _time("all_reduce", "recursive", p, n) == pytest.approx(
        lg * (ALPHA + n * BETA), rel=1e-9
    )
    one_phase = lg * ALPHA + (p - 1) / p * n * BETA
    assert _time("reduce_scatter", "recursive", p, n) == pytest.approx(one_phase, rel=1e-9)
    assert _time("all_gather", "recursive", p, n) == pytest.approx(one_phase, rel=1e-9)
    assert _time("all_reduce", "rabenseifner", p, n) == pytest.approx(
        closed_forms.rabenseifner_all_reduce(p, n, ALPHA, BETA), rel=1e-9
    )
