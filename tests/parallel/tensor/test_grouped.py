"""Collectives inside groups of a tensor-parallel worker: the replicated kv heads' sums."""

import numpy as np

from simulator.ops.tape import CollectiveCall, recording
from simulator.parallel.tensor.collectives import in_groups


def test_an_all_reduce_in_groups_adds_inside_each_group_only():
    xs = [np.full(6, float(r)) for r in range(4)]
    with recording() as tape:
        out = in_groups("all_reduce", xs, [[0, 1], [2, 3]], "kv")
    np.testing.assert_array_equal(out[0], np.full(6, 1.0))
    np.testing.assert_array_equal(out[3], np.full(6, 5.0))
    (call,) = [item for item in tape.items if isinstance(item, CollectiveCall)]
    assert call.plan.group_size == 4 and call.kind == "tp"
    # a ring of two sends 2 (g-1)/g = 1 times the array per rank, within its pair
    assert call.plan.bytes_by_rank == (6 * 8,) * 4
    assert {(t.src // 2, t.dst // 2) for t in call.plan.transfers} == {(0, 0), (1, 1)}


def test_ranks_in_no_group_keep_their_array():
    xs = [np.full(2, float(r)) for r in range(3)]
    out = in_groups("all_reduce", xs, [[0, 2]], "kv")
    np.testing.assert_array_equal(out[1], xs[1])
    np.testing.assert_array_equal(out[2], np.full(2, 2.0))
