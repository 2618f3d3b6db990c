"""Trees: binomial broadcast and reduce (ceil(lg p) rounds of whole arrays) for any root and
group size; NCCL's pipelined tree all-reduce (chains and binary trees, chunks both ways)."""

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


@pytest.mark.parametrize("p", [2, 3, 8, 16])
@pytest.mark.parametrize("n", [4000, 4 * 10**6])
def test_all_reduce_is_a_chain_pipelined_both_ways_on_one_switch(p: int, n: int) -> None:
    # a size every chunk divides (the closed form has chunks of equal size)
    while (n // 4) % closed_forms.pipeline_chunks(2 * (p - 1), n, ALPHA, 2 * BETA):
        n += 4
    layout = comm.GroupLayout.of(switch(p), tuple(range(p)))  # chunks sized for its links
    _, plan = comm.collective("all_reduce", [ShapeArray((n // 4,), "float32")] * p, "tree",
                              layout=layout)  # fmt: skip
    end, _ = simulate(plan, switch(p))
    assert end == pytest.approx(closed_forms.chain_all_reduce(p, n, ALPHA, BETA), rel=1e-9)
    # every rank sends the whole array up (but the root) and down (but the leaf)
    assert sum(plan.bytes_by_rank) == 2 * (p - 1) * n


@settings(max_examples=40, deadline=None)
@given(
    nodes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    channels=st.integers(1, 3),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_the_pipelined_tree_sums_across_nodes(
    nodes: list[int], channels: int, n: int, seed: int
) -> None:
    layout = [node for node, count in enumerate(nodes) for _ in range(count)]
    xs = arrays(len(layout), n, seed)
    results, plan = comm.collective("all_reduce", xs, "tree", nodes=layout, channels=channels)
    assert_results("all_reduce", results, xs)
    check_plan(plan)


def test_across_two_nodes_the_network_carries_the_array_once_each_way() -> None:
    from simulator import preset
    from simulator.comm import GroupLayout

    cluster = preset("dgx-a100", nodes=2)
    layout = GroupLayout.of(cluster, tuple(range(16)))
    n = 8 * 10**9
    _, plan = comm.collective("all_reduce", [ShapeArray((n // 4,), "float32")] * 16, "tree",
                              layout=layout)  # fmt: skip
    crossing = sum(t.nbytes for t in plan.transfers if (t.src < 8) != (t.dst < 8))
    assert (plan.channels, crossing) == (8, 2 * n)  # a ring's 2 (p-1)/p n ... per direction
    # pipelined, it runs near the ring's bus bandwidth (a whole-array binomial tree: 12 GB/s)
    from simulator.experiment.collective import run_collective

    tree = run_collective("all_reduce", "tree", cluster, 16, n).seconds
    ring = run_collective("all_reduce", "ring", cluster, 16, n).seconds
    assert ring < tree < 1.25 * ring
