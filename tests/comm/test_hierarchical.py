"""Two-level all-reduce: right sums, the two-level formula, and faster than a flat ring."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import LayoutError, comm, preset
from simulator.comm import closed_forms, hierarchical
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import arrays, assert_results, check_plan, simulate


@settings(max_examples=50, deadline=None)
@given(
    nodes=st.integers(1, 4),
    per_node=st.integers(1, 4),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_results_match_numpy(nodes: int, per_node: int, n: int, seed: int) -> None:
    p = nodes * per_node
    xs = arrays(p, n, seed)
    # Interleaved placement: the algorithm must follow `nodes`, not rank order.
    results, plan = comm.all_reduce(xs, "hierarchical", nodes=[r % nodes for r in range(p)])
    assert_results("all_reduce", results, xs)
    check_plan(plan)


def test_needs_nodes_of_equal_size() -> None:
    xs = [ShapeArray((8,), "float32")] * 4
    with pytest.raises(LayoutError, match=r"needs the node of each of its 4 ranks"):
        hierarchical.all_reduce(xs)
    with pytest.raises(LayoutError, match=r"same number of ranks on every node, got 3, 1"):
        comm.all_reduce(xs, "hierarchical", nodes=[0, 0, 0, 1])


def test_without_nodes_a_group_is_taken_to_fill_dgx_nodes_in_order() -> None:
    _, plan = comm.all_reduce([ShapeArray((64,), "float32")] * 16, "hierarchical")
    across = [t for t in plan.transfers if t.src // 8 != t.dst // 8]
    assert across and all(t.src % 8 == t.dst % 8 for t in across)


def _ranks_on_nodes(nodes: int, per_node: int) -> list[int]:
    return [r // per_node for r in range(nodes * per_node)]


def test_only_one_chunk_per_device_crosses_nodes() -> None:
    cluster = preset("dgx-a100", nodes=2)
    n = 16 * 4 * 1000
    xs = [ShapeArray((n // 4,), "float32")] * 16
    _, plan = comm.all_reduce(xs, "hierarchical", nodes=_ranks_on_nodes(2, 8))
    _, engine = simulate(plan, cluster)
    inter = [e for e in engine.trace.events if e.args.get("link") == "inter"]
    sent = sum(e.args["bytes"] for e in inter if e.args["direction"] == "send")
    # A ring all-reduce of n/8 bytes between 2 nodes, once per local index.
    assert sent == 8 * 2 * 2 * (n // 8 // 2)


@pytest.mark.parametrize("nodes", [2, 4])
def test_time_is_the_two_level_formula_and_beats_the_flat_ring(nodes: int) -> None:
    cluster = preset("dgx-a100", nodes=nodes)
    g, p, n = 8, 8 * nodes, 8 * nodes * 4 * 10_000
    xs = [ShapeArray((n // 4,), "float32")] * p
    _, plan = comm.all_reduce(xs, "hierarchical", nodes=_ranks_on_nodes(nodes, g))
    hierarchical, _ = simulate(plan, cluster)
    intra, inter = cluster.intra_node, cluster.inter_node
    formula = closed_forms.two_level_all_reduce(
        g,
        nodes,
        n,
        intra.latency,
        1 / intra.effective_bandwidth,
        inter.latency,
        1 / inter.effective_bandwidth,
    )
    assert hierarchical == pytest.approx(formula, rel=1e-9)
    _, flat = comm.all_reduce(xs, "ring")
    ring, _ = simulate(flat, cluster)
    assert hierarchical < ring / 3
