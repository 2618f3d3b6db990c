import numpy as np
import pytest

from simulator import ops
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording


def test_batched_matmul_counts_2mnk_per_batch():
    a, b = np.ones((3, 4, 5)), np.ones((5, 6))
    with recording() as tape:
        out = ops.matmul(a, b)
    assert out.shape == (3, 4, 6)
    assert tape.flops() == 2 * 3 * 4 * 5 * 6
    with recording() as tape2:
        shaped = ops.matmul(ShapeArray((3, 4, 5), "float64"), ShapeArray((5, 6), "float64"))
    assert shaped.shape == out.shape and tape2.kernels() == tape.kernels()


def test_elementwise_ops_count_bytes_not_flops():
    x = np.ones((4, 8))
    with recording() as tape:
        ops.relu(x)
        ops.add(x, np.ones(8))
    relu, add = tape.kernels()
    assert relu.flops == 0 and relu.bytes == 2 * x.nbytes
    assert add.bytes == 2 * x.nbytes + 64


def test_gelu_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    dy = rng.normal(size=50)
    eps = 1e-6
    numeric = (ops.gelu(x + eps) - ops.gelu(x - eps)) / (2 * eps) * dy
    np.testing.assert_allclose(ops.gelu_backward(dy, x), numeric, rtol=1e-7, atol=1e-9)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="do not multiply"):
        ops.matmul(np.ones((2, 3)), np.ones((4, 5)))


def test_ops_outside_a_tape_just_compute():
    assert ops.mse(np.ones(4), np.zeros(4)) == 1.0
