"""All-to-all with uneven blocks (all-to-all-v), as a mixture of experts dispatches tokens."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import comm
from simulator.errors import LayoutError
from simulator.ops.arrays import ShapeArray


@settings(max_examples=40, deadline=None)
@given(data=st.data(), p=st.integers(1, 5), algorithm=st.sampled_from(["ring", "naive", "auto"]))
def test_every_rank_gets_the_rows_meant_for_it_in_rank_order(data, p, algorithm):
    splits = [data.draw(st.lists(st.integers(0, 3), min_size=p, max_size=p)) for _ in range(p)]
    xs = [np.arange(2.0 * sum(row)).reshape(-1, 2) + 100 * s for s, row in enumerate(splits)]
    outs, plan = comm.all_to_all(xs, algorithm, splits=splits)
    for d in range(p):
        blocks = []
        for s in range(p):
            lo = sum(splits[s][:d])
            blocks.append(xs[s][lo : lo + splits[s][d]])
        np.testing.assert_array_equal(outs[d], np.concatenate(blocks))
    # the plan moves every block that changes hands, 16 bytes a row, and nothing else
    ring = plan.algorithm == "ring"
    moved = sum(16 * splits[s][d] for s in range(p) for d in range(p) if s != d)
    relayed = sum(16 * splits[s][d] for s in range(1, p) for d in range(1, p) if s != d)
    expected = moved if ring else moved + relayed  # naive relays through rank 0
    assert sum(t.nbytes for t in plan.transfers) == expected
    assert all(t.nbytes > 0 for t in plan.transfers)


def test_shape_only_results_have_the_received_rows():
    xs = [ShapeArray((n, 3), "bf16") for n in (3, 1)]
    outs, plan = comm.all_to_all(xs, "ring", splits=[[1, 2], [1, 0]])
    assert outs == [ShapeArray((2, 3), "bf16"), ShapeArray((2, 3), "bf16")]
    assert [(t.src, t.dst, t.nbytes) for t in plan.transfers] == [(0, 1, 12), (1, 0, 6)]


def test_equal_blocks_are_the_special_case_without_splits():
    xs = [np.arange(6.0) + 10 * r for r in range(3)]
    equal, _ = comm.all_to_all(xs, "ring")
    rows, _ = comm.all_to_all([x.reshape(-1, 1) for x in xs], "ring", splits=[[2, 2, 2]] * 3)
    for a, b in zip(equal, rows, strict=True):
        np.testing.assert_array_equal(a, b.reshape(-1))


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ([[1, 1]], "must be 2 rows of 2 counts"),
        ([[1, 1], [3, 0]], "rank 1 splits 2 rows into [3, 0]"),
        ([[2, -0], [1, 2]], "rank 1 splits 2 rows"),
    ],
)
def test_splits_that_do_not_fit_are_one_clear_error(splits, message):
    xs = [np.zeros((2, 1)), np.zeros((2, 1))]
    with pytest.raises(LayoutError, match=message.replace("[", r"\[").replace("]", r"\]")):
        comm.all_to_all(xs, "ring", splits=splits)
