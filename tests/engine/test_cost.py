import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import ops
from simulator.engine.cost import CostModel, expected_max, overlapped, tiling
from simulator.hardware import preset, single_switch
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording


def test_memory_bound_kernel_and_fixed_kernel():
    device = replace(preset("toy").device, launch_overhead=1e-6)
    with recording() as tape:
        ops.relu(ShapeArray((1000,), "float64"))
        ops.fixed("stage", 0.25)
    relu, fixed = tape.kernels()
    cost = CostModel(device)
    assert cost.kernel_time(relu) == pytest.approx(1e-6 + 16000 / device.memory_bandwidth)
    assert cost.kernel_time(fixed) == 0.25


def test_matmul_kernel_time_is_the_roofline_without_tiling_or_jitter():
    device = replace(preset("a100-node").device, sms=0, jitter=0.0)
    a, b = ShapeArray((4096, 8192), "bf16"), ShapeArray((8192, 1024), "bf16")
    with recording() as tape:
        ops.matmul(a, b)
    (kernel,) = tape.kernels()
    flops = 2 * 4096 * 8192 * 1024
    moved = 2 * (4096 * 8192 + 8192 * 1024 + 4096 * 1024)
    assert (kernel.flops, kernel.bytes, kernel.shape) == (flops, moved, (1, 4096, 1024, 8192))
    eff = device.efficiency["gemm"]
    expected = device.launch_overhead + max(
        flops / (device.peak("bf16") * eff), moved / (device.memory_bandwidth * eff)
    )
    assert CostModel(device).kernel_time(kernel) == pytest.approx(expected, rel=1e-12)
    # on the A100's 108 multiprocessors its best tiles, 512 of 128x64, take five waves
    tiled = CostModel(replace(device, sms=108)).kernel_time(kernel)
    assert tiled - device.launch_overhead == pytest.approx(
        flops / (device.peak("bf16") * eff * 512 / 540), rel=1e-12
    )


def test_tiles_that_fill_every_wave_lose_nothing_and_a_partial_wave_does():
    # 108 tiles of 256x128 fill the 108 multiprocessors of an A100 exactly once
    assert tiling((1, 256 * 12, 128 * 9, 64), 108) == 1.0
    # 109 such tiles need a second wave that keeps 107 multiprocessors idle; smaller
    # tiles do better: 218 of 128x128 in 3 waves, best 436 of 128x64 in 5
    assert tiling((1, 256 * 109, 128, 64), 108) == pytest.approx(436 / 540)
    # a GEMM smaller than one tile uses its fraction of one multiprocessor
    assert tiling((1, 64, 64, 64), 108) == pytest.approx(64 * 64 / (128 * 64 * 108))


def test_the_slowest_of_n_devices_is_the_expected_maximum():
    assert expected_max(1) == 0.0
    assert expected_max(2) == pytest.approx(1 / math.sqrt(math.pi), rel=0.05)  # Blom: 4.5% off
    assert [expected_max(n) > expected_max(n - 1) for n in (4, 64, 4096)] == [True] * 3
    device = preset("a100-node").device
    with recording() as tape:
        ops.relu(ShapeArray((1 << 20,), "bf16"))
    (kernel,) = tape.kernels()
    alone, many = CostModel(device).kernel_time(kernel), CostModel(device, 64).kernel_time(kernel)
    assert many == pytest.approx(alone * (1 + device.jitter * expected_max(64)), rel=1e-12)


def test_ideal_devices_state_no_tiling_no_host_and_no_jitter():
    for d in (preset("toy").device, single_switch(4, 1e9, 0.0).device):
        assert (d.sms, d.host_overhead, d.jitter, d.overlap_slowdown) == (0, 0.0, 0.0, 0.0)


TIMES = st.floats(0.0, 10.0, allow_nan=False)


@given(start=TIMES, seconds=st.floats(1e-6, 10.0), busy=TIMES, slowdown=st.floats(0.0, 2.0))
def test_compute_beside_communication_does_its_work_slower_until_the_communication_ends(
    start: float, seconds: float, busy: float, slowdown: float
) -> None:
    took = overlapped(start, seconds, busy, slowdown)
    assert seconds * (1 - 1e-12) <= took <= seconds * (1 + slowdown) * (1 + 1e-12)
    # the work done: at 1 / (1 + slowdown) of full speed until busy, at full speed after
    beside = min(took, max(busy - start, 0.0))
    work = beside / (1 + slowdown) + (took - beside)
    assert work == pytest.approx(seconds, rel=1e-9, abs=1e-15)
    if busy <= start:
        assert took == seconds
    elif seconds * (1 + slowdown) <= busy - start:
        assert took == seconds * (1 + slowdown)
