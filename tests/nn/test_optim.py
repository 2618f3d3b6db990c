import numpy as np

from simulator.nn.optim import SGD, Adam
from simulator.nn.param import Param, gradients_in
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording


def test_sgd_step():
    p = Param("w", np.array([1.0, 2.0]))
    p.grad[:] = [0.5, -1.0]
    SGD(0.1).step([p])
    np.testing.assert_allclose(p.value, [0.95, 2.1])


def test_adam_matches_the_algorithm():
    p = Param("w", np.array([1.0]))
    opt = Adam(0.1)
    m = v = 0.0
    w = 1.0
    for t, g in enumerate([0.5, -0.2, 0.3], start=1):
        p.grad[:] = g
        opt.step([p])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(p.value, [w], rtol=1e-12)


def test_state_bytes_mixed_precision_adam_is_12_per_parameter():
    half = Param("w", ShapeArray((10,), "bf16"))
    assert Adam(0.1).state_bytes(half) == 120  # fp32 master + momentum + variance
    assert Adam(0.1).state_bytes(Param("w", np.zeros(10))) == 160  # two float64 moments
    assert SGD(0.1).state_bytes(Param("w", np.zeros(10))) == 0


def test_mixed_precision_adam_moves_38_bytes_per_parameter_in_bf16_and_52_in_fp16():
    """Gradient norm (4), update (4 + 2 x 12), master into the 16-bit weight (4 + 2);
    FP16 also copies its gradients to FP32 (2 + 4) and unscales them (4 + 4)."""
    for dtype, per_parameter in (("bf16", 38), ("fp16", 52)):
        with recording() as tape:
            Adam(0.1).step([Param("w", ShapeArray((10,), dtype))])
        assert [k.bytes for k in tape.kernels()] == [10 * per_parameter]
    with recording() as tape:
        Adam(0.1).step([Param("w", np.zeros(10))])
    assert [k.bytes for k in tape.kernels()] == [3 * 80 + 2 * 160]


def test_fp32_gradients_skip_fp16s_copy_into_main_gradients():
    """With gradients accumulated in FP32 (``grad_precision = "fp32"``) FP16 Adam has no
    copy to make (2 + 4 bytes fewer) and BF16 Adam moves what it moved."""
    for dtype, per_parameter in (("bf16", 38), ("fp16", 46)):
        with gradients_in("fp32"), recording() as tape:
            Adam(0.1).step([Param("w", ShapeArray((10,), dtype))])
        assert [k.bytes for k in tape.kernels()] == [10 * per_parameter]


def test_only_16_bit_parameters_take_fp32_gradients():
    with gradients_in("fp32"):
        assert Param("w", ShapeArray((10,), "bf16")).grad.dtype == "float32"
        assert Param("w", ShapeArray((10,), "fp16")).grad.dtype == "float32"
        assert Param("w", np.zeros(10, dtype=np.float64)).grad.dtype == np.float64
    assert Param("w", ShapeArray((10,), "bf16")).grad.dtype == "bf16"
