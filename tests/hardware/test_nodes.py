"""Clusters whose nodes differ: each node its own devices and links, one shape for all."""

from dataclasses import replace

import pytest

from simulator.errors import ScenarioError
from simulator.hardware import (
    A100_80GB,
    H100_SXM,
    HDR_200,
    NDR_400,
    NVLINK3,
    NVLINK4,
    ClusterSpec,
    LinkSpec,
    NodeSpec,
    cluster_of,
    preset,
    slower,
)

MIXED = cluster_of([("dgx-a100", 2), ("dgx-h100", 2)])


def test_each_node_has_its_own_devices_and_links():
    c = MIXED
    assert (c.nodes, c.num_devices, c.name) == (4, 32, "2 x dgx-a100 + 2 x dgx-h100")
    assert not c.homogeneous
    assert [c.node_spec(n).device for n in range(4)] == [A100_80GB] * 2 + [H100_SXM] * 2
    assert [c.device_of(d).name for d in (0, 15, 16, 31)] == [
        "A100-SXM4-80GB", "A100-SXM4-80GB", "H100-SXM5-80GB", "H100-SXM5-80GB",
    ]  # fmt: skip
    # node 0's specs keep their old names
    assert (c.device, c.intra_node, c.inter_node) == (A100_80GB, NVLINK3, HDR_200)
    assert c.describe() == "2 x 8 A100-SXM4-80GB + 2 x 8 H100-SXM5-80GB"
    assert [(r, s.device.name) for r, s in c.kinds()] == [
        (range(0, 2), "A100-SXM4-80GB"), (range(2, 4), "H100-SXM5-80GB"),
    ]  # fmt: skip


def test_links_inside_a_node_are_its_own_and_between_nodes_the_slower_end():
    c = MIXED
    assert c.link_between(0, 1) is NVLINK3
    assert c.link_between(16, 17) is NVLINK4
    assert c.link_between(0, 8) is HDR_200  # two A100 nodes
    assert c.link_between(16, 24) is NDR_400  # two H100 nodes
    # A100 node to H100 node, either way: HDR's 25 GB/s, the larger latency
    assert c.link_between(0, 16) == c.link_between(16, 0) == HDR_200


def test_slower_takes_the_lower_bandwidth_and_the_higher_latency():
    fast, slow = LinkSpec(100, 1e-6), LinkSpec(50, 1e-7, efficiency=0.5)
    assert slower(fast, slow) == LinkSpec(50, 1e-6, efficiency=0.5)
    assert slower(slow, fast) == slower(fast, slow)
    assert slower(fast, LinkSpec(100, 1e-6)) is fast


def test_alike_nodes_make_a_homogeneous_cluster_equal_to_the_preset():
    same = cluster_of([("dgx-a100", 1), ("dgx-a100", 3)])
    assert same == preset("dgx-a100", nodes=4) and same.homogeneous
    assert same.name == "dgx-a100" and same.later_nodes == ()
    # the same hardware under two names is one kind of node
    twins = cluster_of([("a100-node", 1), ("dgx-a100", 1)])
    assert twins.homogeneous and twins.name == "1 x a100-node + 1 x dgx-a100"


def test_every_node_has_the_same_shape():
    with pytest.raises(ScenarioError, match=r"same devices_per_node .* dgx-a100 has 8, toy has 4"):
        cluster_of([("dgx-a100", 1), ("toy", 1)])
    mixed = cluster_of([("dgx-a100", 1), ("toy", 1)], devices_per_node=4, nics_per_node=2)
    assert mixed.num_devices == 8 and mixed.nics == 2
    assert mixed.device_of(4).name == "toy"


def test_bad_runs():
    with pytest.raises(ScenarioError, match="unknown cluster preset 'tpu'"):
        cluster_of([("tpu", 1)])
    with pytest.raises(ScenarioError, match="node count must be at least 1, got 0"):
        cluster_of([("dgx-a100", 0)])
    with pytest.raises(ScenarioError, match="at least one node"):
        cluster_of([])
    node = NodeSpec(H100_SXM, NVLINK4, NDR_400)
    with pytest.raises(ScenarioError, match="has 2 nodes, but a kind of node starts at node 2"):
        replace(preset("dgx-a100", nodes=2), later_nodes=((2, node),))
    with pytest.raises(ScenarioError, match="increasing nodes after node 0"):
        replace(preset("dgx-a100", nodes=4), later_nodes=((0, node),))


def test_overrides_reach_every_kind_of_node():
    def half_memory(n: NodeSpec) -> NodeSpec:
        return replace(n, device=replace(n.device, memory_bytes=n.device.memory_bytes / 2))

    c = MIXED.with_every_node(half_memory)
    assert {c.device_of(d).memory_bytes for d in range(32)} == {40 * 2**30}
    assert c.device_of(31).name == "H100-SXM5-80GB"
    assert MIXED.smallest_memory == 80 * 2**30


def test_a_cluster_of_one_kind_is_built_as_before():
    c = ClusterSpec("x", 2, 4, A100_80GB, NVLINK3, HDR_200)
    assert c.homogeneous and c.node_spec(1) == NodeSpec(A100_80GB, NVLINK3, HDR_200)
    assert c.device_of(7) is A100_80GB
    assert hash(c) == hash(ClusterSpec("x", 2, 4, A100_80GB, NVLINK3, HDR_200))
