import pytest

from simulator.errors import ScenarioError
from simulator.hardware import GB, PRESETS, TFLOPS, GiB, preset, single_switch


def test_presets_carry_datasheet_figures():
    a100 = preset("a100-node").device
    assert a100.peak("bf16") == 312 * TFLOPS
    assert a100.memory_bytes == 80 * GiB
    assert a100.memory_bandwidth == 2039 * GB
    assert preset("dgx-a100").inter_node.bandwidth == 25 * GB  # HDR 200 Gb/s per GPU
    assert preset("h100-node").device.peak("bf16") == 989 * TFLOPS
    assert preset("h100-node").intra_node.bandwidth == 450 * GB


def test_toy_nodes_have_four_devices():
    assert preset("toy", nodes=3).num_devices == 12
    assert {"toy", "a100-node", "dgx-a100", "h100-node"} <= set(PRESETS)


def test_links_between_devices():
    c = preset("dgx-a100", nodes=2)
    assert c.link_between(0, 7) is c.intra_node
    assert c.link_between(7, 8) is c.inter_node
    assert c.link_between(3, 3) is None


def test_unknown_preset_and_bad_nodes():
    with pytest.raises(ScenarioError, match="unknown cluster preset 'tpu'"):
        preset("tpu")
    with pytest.raises(ScenarioError, match="nodes must be at least 1"):
        preset("toy", nodes=0)


def test_single_switch_is_one_node():
    c = single_switch(8, 100 * GB, 5e-6)
    assert c.nodes == 1 and c.num_devices == 8
    assert c.intra_node.effective_bandwidth == 100 * GB
