"""Channels: parallel rings that stripe a collective over every NIC, as NCCL runs them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import comm, preset
from simulator.comm import GroupLayout, closed_forms
from simulator.comm.layout import channel_rings
from simulator.experiment.collective import run_collective
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import ALPHA, BETA, arrays, assert_results, check_plan, simulate, switch


@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(["all_reduce", "reduce_scatter", "all_gather"]),
    nodes=st.integers(1, 3),
    per_node=st.integers(1, 4),
    channels=st.integers(1, 5),
    n=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_every_channel_count_gives_the_numpy_result(
    op: str, nodes: int, per_node: int, channels: int, n: int, seed: int
) -> None:
    p = nodes * per_node
    xs = arrays(p, n, seed)
    # interleaved placement: the rings must follow the nodes, not the rank order
    placement = [r % nodes for r in range(p)]
    results, plan = comm.collective(op, xs, "ring", nodes=placement, channels=channels)
    assert_results(op, results, xs)
    check_plan(plan)
    assert plan.channels == channels
    assert {t.channel for t in plan.transfers} <= set(range(channels))


@pytest.mark.parametrize("channels", [1, 2, 3, 8])
@pytest.mark.parametrize("op", ["all_reduce", "reduce_scatter", "all_gather"])
def test_closed_forms_hold_per_channel_on_one_switch(op: str, channels: int) -> None:
    """``C`` channels of ``n/C`` bytes share every port, each at ``1/C`` of its
    bandwidth: the time is the closed form of one ring of ``n`` bytes."""
    p = 8
    n = 4 * p * channels * 1000
    piece = n // 4 // p if op == "all_gather" else n // 4
    _, plan = comm.collective(op, [ShapeArray((piece,), "float32")] * p, "ring", channels=channels)
    end, _ = simulate(plan, switch(p))
    form = closed_forms.ring_all_reduce if op == "all_reduce" else closed_forms.ring_all_gather
    assert end == pytest.approx(form(p, n, ALPHA, BETA), rel=1e-9)
    # ... and each channel alone, with its share of the bytes over ports C times slower
    assert end == pytest.approx(form(p, n / channels, ALPHA, channels * BETA), rel=1e-9)


def test_each_channel_crosses_nodes_through_other_nics() -> None:
    cluster = preset("dgx-a100", nodes=2)
    layout = GroupLayout.of(cluster, tuple(range(16)))
    rings = channel_rings(layout, 16, layout.max_channels())
    assert len(rings) == 8
    exits, entries = set(), set()
    for ring in rings:
        assert sorted(ring) == list(range(16))
        hops = [(a, b) for a, b in zip(ring, ring[1:] + ring[:1], strict=True) if a // 8 != b // 8]
        assert len(hops) == 2  # once into each node
        exits |= {cluster.nic_of(a) for a, _ in hops}
        entries |= {cluster.nic_of(b) for _, b in hops}
    assert exits == entries == set(range(16))  # all 16 NICs out and in, once each


def test_channels_move_the_published_volume() -> None:
    """Every rank still sends 2 (p-1)/p n bytes (Patarasuk and Yuan 2009)."""
    p, n = 16, 16 * 8 * 4 * 100
    layout = GroupLayout.of(preset("dgx-a100", nodes=2), tuple(range(p)))
    xs = [ShapeArray((n // 4,), "float32")] * p
    _, plan = comm.collective("all_reduce", xs, "ring", layout=layout)
    assert plan.channels == 8
    assert plan.bytes_by_rank == (2 * (p - 1) * n // p,) * p


def test_striping_over_eight_nics_is_eight_times_one_ring() -> None:
    cluster = preset("dgx-a100", nodes=2)
    one = run_collective("all_reduce", "ring", cluster, 16, 10**9, channels=1)
    eight = run_collective("all_reduce", "ring", cluster, 16, 10**9)
    assert eight.channels == 8
    assert one.seconds / eight.seconds == pytest.approx(8, rel=0.05)


def test_a_thousand_rank_ring_is_a_linear_plan() -> None:
    """The rounds of a channel share one ring tuple and one sizes tuple: memory grows
    with the devices, not with the 16 million messages."""
    p = 1000
    layout = GroupLayout.of(preset("dgx-a100", nodes=125), tuple(range(p)))
    xs = [ShapeArray((250_000_000,), "float32")] * p
    _, plan = comm.collective("all_reduce", xs, "ring", layout=layout)
    assert plan.channels == 8 and len(plan.rounds) == 2 * (p - 1) * 8
    assert plan.messages == 2 * (p - 1) * p * 8
    assert len({id(r.src) for r in plan.rounds}) == 8
    assert len({id(r.sizes) for r in plan.rounds}) <= 2 * 8  # per channel and phase
