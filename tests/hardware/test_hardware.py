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


def test_h200_and_b200_presets_carry_their_datasheets():
    h100, h200, b200 = (preset(n).device for n in ("dgx-h100", "dgx-h200", "dgx-b200"))
    assert h200.peak_flops == h100.peak_flops  # the H100's compute
    assert (h200.memory_bytes, h200.memory_bandwidth) == (141 * GiB, 4800 * GB)
    assert (b200.peak("bf16"), b200.peak("fp8")) == (2250 * TFLOPS, 4500 * TFLOPS)
    assert (b200.memory_bytes, b200.memory_bandwidth) == (180 * GiB, 8000 * GB)
    assert preset("dgx-b200").intra_node.bandwidth == 900 * GB  # NVLink 5, per direction
    assert preset("dgx-b200").inter_node.bandwidth == 50 * GB  # ConnectX-7, NDR 400 Gb/s
    assert h100.peak("fp8") == 1979 * TFLOPS  # dense, half the datasheet's sparse 3958
    # every preset lists its FP8 peak, or has none (no FP8 tensor cores before Hopper)
    assert [n for n, c in PRESETS.items() if "fp8" not in c.device.peak_flops] == [
        "a100-node",
        "dgx-a100",
        "v100-node",
    ]
    # the achievable fraction of the BF16 peak of a fused attention kernel (presets.py)
    assert [
        preset(n).device.efficiency["attention"] for n in ("dgx-a100", "dgx-h100", "dgx-b200")
    ] == [0.58, 0.53, 0.55]


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
    for nodes in (0, -2, 2.0, True, "2"):
        with pytest.raises(ScenarioError, match="a whole number of nodes, at least 1"):
            preset("toy", nodes=nodes)


def test_single_switch_is_one_node():
    c = single_switch(8, 100 * GB, 5e-6)
    assert c.nodes == 1 and c.num_devices == 8
    assert c.intra_node.effective_bandwidth == 100 * GB


def test_nodes_have_nics_that_devices_share():
    dgx = preset("dgx-a100", nodes=2)
    assert dgx.nics == 8 and dgx.nics_per_node is None  # 8 x HDR 200 Gb/s, one per GPU
    assert preset("dgx-h100").nics == 8
    assert preset("dgx-h100").inter_node.bandwidth == 50 * GB  # NDR 400 Gb/s
    assert [dgx.nic_of(d) for d in (0, 7, 8, 15)] == [0, 7, 8, 15]
    four = dgx.with_nics(4)
    assert [four.nic_of(d) for d in range(10)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [four.nic_lead(n) for n in range(5)] == [0, 2, 4, 6, 8]
    three = dgx.with_nics(3)  # uneven: 3, 3 and 2 GPUs per NIC
    assert [three.nic_of(d) for d in range(8)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert [three.nic_lead(n) for n in range(3)] == [0, 3, 6]


def test_a_device_has_one_nic():
    with pytest.raises(ScenarioError, match="nics_per_node must be 1 to devices_per_node"):
        preset("dgx-a100").with_nics(16)
    with pytest.raises(ScenarioError, match="got 0"):
        preset("dgx-a100").with_nics(0)


def test_achievable_fractions_follow_nccl_measurements():
    """Ring busbw over NVLink approaches its effective bandwidth: about 230 GB/s on
    8 x A100 and 370 GB/s on 8 x H100 (nccl-tests); 24 GB/s per HDR NIC."""
    assert preset("a100-node").intra_node.effective_bandwidth == pytest.approx(234 * GB)
    assert preset("h100-node").intra_node.effective_bandwidth == pytest.approx(369 * GB)
    assert preset("dgx-a100").inter_node.effective_bandwidth == pytest.approx(24 * GB)
