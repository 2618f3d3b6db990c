from dataclasses import replace

import pytest

from simulator import ops
from simulator.engine.cost import CostModel
from simulator.hardware import preset
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording


def test_matmul_kernel_time_is_the_roofline():
    device = preset("a100-node").device
    a, b = ShapeArray((4096, 8192), "bf16"), ShapeArray((8192, 1024), "bf16")
    with recording() as tape:
        ops.matmul(a, b)
    (kernel,) = tape.kernels()
    flops = 2 * 4096 * 8192 * 1024
    moved = 2 * (4096 * 8192 + 8192 * 1024 + 4096 * 1024)
    assert (kernel.flops, kernel.bytes) == (flops, moved)
    eff = device.efficiency["gemm"]
    expected = device.launch_overhead + max(
        flops / (device.peak("bf16") * eff), moved / (device.memory_bandwidth * eff)
    )
    assert CostModel(device).kernel_time(kernel) == pytest.approx(expected, rel=1e-12)


def test_memory_bound_kernel_and_fixed_kernel():
    device = replace(preset("toy").device, launch_overhead=1e-6)
    with recording() as tape:
        ops.relu(ShapeArray((1000,), "float64"))
        ops.fixed("stage", 0.25)
    relu, fixed = tape.kernels()
    cost = CostModel(device)
    assert cost.kernel_time(relu) == pytest.approx(1e-6 + 16000 / device.memory_bandwidth)
    assert cost.kernel_time(fixed) == 0.25
