"""The parameter-server pattern: right answers, and a root port that serialises everything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import comm
from simulator.comm import closed_forms
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import ALPHA, BETA, arrays, assert_results, check_plan, simulate, switch

OPS = (
    "broadcast",
    "reduce",
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "all_to_all",
    "scatter",
    "gather",
)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(OPS), p=st.integers(1, 9), n=st.integers(0, 30), data=st.data())
def test_results_match_numpy(op: str, p: int, n: int, data: st.DataObject) -> None:
    root = data.draw(st.integers(0, p - 1)) if op in comm.ROOTED else 0
    xs = arrays(p, n, seed=data.draw(st.integers(0, 2**16)))
    results, plan = comm.collective(op, xs, "naive", root=root)
    assert_results(op, results, xs, root)
    check_plan(plan)


def test_every_message_touches_the_root() -> None:
    _, plan = comm.all_reduce([ShapeArray((10,), "float32")] * 5, "naive")
    assert all(0 in (t.src, t.dst) for t in plan.transfers)
    gathered = [i for i, t in enumerate(plan.transfers) if t.dst == 0]
    assert all(t.deps == tuple(gathered) for t in plan.transfers if t.src == 0)


@pytest.mark.parametrize("p", [2, 3, 6])
@pytest.mark.parametrize(
    ("op", "form"),
    [
        ("broadcast", closed_forms.naive_broadcast),
        ("reduce", closed_forms.naive_broadcast),
        ("scatter", closed_forms.naive_scatter),
        ("gather", closed_forms.naive_scatter),
        ("all_reduce", closed_forms.naive_all_reduce),
        ("reduce_scatter", closed_forms.naive_all_gather),
        ("all_gather", closed_forms.naive_all_gather),
        ("all_to_all", closed_forms.naive_all_to_all),
    ],
)
def test_time_is_the_closed_form(op: str, form, p: int) -> None:
    n = 4 * p * 100
    piece = n // 4 // p if op in ("all_gather", "gather") else n // 4
    _, plan = comm.collective(op, [ShapeArray((piece,), "float32")] * p, "naive", root=p - 1)
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx(form(p, n, ALPHA, BETA), rel=1e-9)


def test_all_reduce_grows_linearly_with_the_group() -> None:
    n = 4000
    _, plan = comm.all_reduce([ShapeArray((n // 4,), "float32")] * 7, "naive")
    end, _ = simulate(plan, switch(7))
    assert end == pytest.approx(2 * 6 * (ALPHA + n * BETA), rel=1e-9)
