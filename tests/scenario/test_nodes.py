"""``[[cluster.node]]`` tables: nodes of several kinds in a scenario file."""

from __future__ import annotations

import json
import tomllib

import pytest

from simulator.cli import main
from simulator.experiment.runner import run_scenario
from simulator.hardware import GB, GiB, preset
from simulator.scenario.parse import parse_scenario
from tests.conftest import assert_run_fails

REST = """
[model]
kind = "mlp"
layers = 4
width = 8
[training]
global_batch = 8
steps = 2
[[strategy]]
name = "hybrid"
dp = 2
tp = 2
pp = 2
microbatches = 2
[[strategy]]
name = "dp"
dp = 8
"""

PLAIN = (
    """
[cluster]
preset = "toy"
nodes = 2
[cluster.device]
memory_gib = 2
[cluster.inter_node]
latency_us = 3
"""
    + REST
)

LISTED = (
    """
[cluster]
[[cluster.node]]
preset = "toy"
[[cluster.node]]
preset = "toy"
count = 1
[cluster.device]
memory_gib = 2
[cluster.inter_node]
latency_us = 3
"""
    + REST
)

MIXED = """
[cluster]
nodes = 4
[[cluster.node]]
preset = "dgx-a100"
count = 2
[[cluster.node]]
preset = "dgx-h100"
count = 2
[model]
kind = "abstract"
stages = 2
forward_ms = 1.0
[training]
numerics = false
global_batch = 4
[[strategy]]
name = "pipe"
pp = 2
microbatches = 2
"""


def parse(text: str):
    return parse_scenario(tomllib.loads(text), "test.toml")


def test_a_list_of_alike_nodes_is_the_plain_cluster_byte_for_byte():
    plain, listed = parse(PLAIN), parse(LISTED)
    assert listed.cluster == plain.cluster and listed.cluster.name == "toy"
    a = json.dumps(run_scenario(plain).to_json(), allow_nan=False)
    b = json.dumps(run_scenario(listed).to_json(), allow_nan=False)
    assert a == b


def test_nodes_of_two_kinds():
    c = parse(MIXED).cluster
    assert (c.nodes, c.num_devices, c.homogeneous) == (4, 32, False)
    assert [c.device_of(d).name for d in (15, 16)] == ["A100-SXM4-80GB", "H100-SXM5-80GB"]
    assert c.node_spec(3).inter_node == preset("dgx-h100").inter_node
    # without nodes, the tables count them
    assert parse(MIXED.replace("nodes = 4\n", "")).cluster == c


def test_overrides_apply_to_every_node():
    text = MIXED.replace(
        "[model]",
        "[cluster.device]\nmemory_gib = 40\n[cluster.intra_node]\nbandwidth_gbs = 100\n[model]",
    )
    c = parse(text).cluster
    for node in range(4):
        spec = c.node_spec(node)
        assert spec.device.memory_bytes == 40 * GiB
        assert spec.intra_node.bandwidth == 100 * GB
    # each keeps what was not overridden
    assert c.node_spec(0).device.peak("bf16") == preset("dgx-a100").device.peak("bf16")
    assert c.node_spec(3).device.peak("bf16") == preset("dgx-h100").device.peak("bf16")


def test_devices_per_node_makes_presets_of_different_sizes_agree():
    text = MIXED.replace('preset = "dgx-h100"', 'preset = "toy"').replace(
        "nodes = 4", "nodes = 4\ndevices_per_node = 4\nnics_per_node = 2"
    )
    c = parse(text).cluster
    assert (c.num_devices, c.nics, c.device_of(8).name) == (16, 2, "toy")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('preset = "dgx-h100"', 'preset = "tpu"'), "[[cluster.node]] #2 preset must be one of"),
        (("count = 2\n[[cluster.node]]", "count = 0\n[[cluster.node]]"), "#1 count must be"),
        (('preset = "dgx-h100"', 'preset = "toy"'), "same devices_per_node"),
        (("nodes = 4", "nodes = 3"), "nodes = 3, but the [[cluster.node]] tables count 4 nodes"),
        (("nodes = 4", 'preset = "toy"'), "[cluster] preset and [[cluster.node]] both"),
        (('preset = "dgx-h100"\n', ""), "[[cluster.node]] #2 needs preset = one of"),
        (("count = 2\n[[cluster.node]]", "cout = 2\n[[cluster.node]]"), "did you mean 'count'"),
        (("count = 2\n[[cluster.node]]", "count = 999999999\n[[cluster.node]]"),
         "count 1000000001 nodes"),
    ],
)  # fmt: skip
def test_bad_node_tables_exit_2_with_one_line(tmp_path, capsys, change, message):
    assert_run_fails(tmp_path, capsys, MIXED.replace(*change), message)


def test_a_node_table_needs_two_brackets(tmp_path, capsys):
    text = '[cluster]\n[cluster.node]\npreset = "toy"\n' + REST
    assert_run_fails(tmp_path, capsys, text, "node must be a list of [[cluster.node]] tables")
    text = "[cluster]\nnode = []\n" + REST
    assert_run_fails(tmp_path, capsys, text, "add at least one [[cluster.node]] table")


def test_the_run_command_names_both_kinds(tmp_path, capsys):
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    assert main(["run", str(path), "--no-files", "--quiet", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "on 2 x 8 A100-SXM4-80GB + 2 x 8 H100-SXM5-80GB (2 x dgx-a100 + 2 x dgx-h100)" in out
    assert "(device memory: 80.00 GiB)" in out
