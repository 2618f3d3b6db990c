"""The Llama block's ops: RMSNorm, SwiGLU and rotary embeddings, values and gradients."""

import numpy as np
import pytest

from simulator.ops import llama as ops_llama
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording
from tests.gradcheck import assert_close_at


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_rmsnorm_matches_its_definition_and_gradients(rng):
    x = rng.normal(size=(2, 3, 6))
    gamma = rng.normal(size=6)
    y = ops_llama.rmsnorm(x, gamma, 1e-5)
    np.testing.assert_allclose(y, x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * gamma)
    dy = rng.normal(size=x.shape)

    def f():
        return float(np.sum(dy * ops_llama.rmsnorm(x, gamma, 1e-5)))

    assert_close_at(f, x, ops_llama.rmsnorm_backward(dy, x, gamma, 1e-5), rng)
    assert_close_at(f, gamma, ops_llama.rmsnorm_weight_grad(dy, x, 1e-5), rng)


def test_swiglu_is_silu_of_the_gate_times_the_value_and_has_the_right_gradient(rng):
    x = rng.normal(size=(2, 3, 8))
    gate, up = x[..., :4], x[..., 4:]
    np.testing.assert_allclose(ops_llama.swiglu(x), gate / (1 + np.exp(-gate)) * up)
    dy = rng.normal(size=(2, 3, 4))

    def f():
        return float(np.sum(dy * ops_llama.swiglu(x)))

    assert_close_at(f, x, ops_llama.swiglu_backward(dy, x), rng)
    with pytest.raises(ValueError, match="even last axis"):
        ops_llama.swiglu(rng.normal(size=(2, 3)))


def test_rope_rotates_pairs_so_scores_depend_on_the_distance_only(rng):
    d, theta = 8, 10_000.0
    q, k = rng.normal(size=(1, d)), rng.normal(size=(1, d))

    def at(x, p):
        return ops_llama.rope(x, theta, first=p)[0]

    # a rotation keeps the norm; q_m . k_n depends on m - n (Su et al. 2021, eq. 16)
    assert np.linalg.norm(at(q, 5)) == pytest.approx(np.linalg.norm(q))
    assert at(q, 7) @ at(k, 3) == pytest.approx(at(q, 4) @ at(k, 0), rel=1e-12)
    assert at(q, 7) @ at(k, 3) != pytest.approx(at(q, 7) @ at(k, 0), rel=1e-3)
    # position 0 is not rotated; a later rank's rows continue the sequence
    np.testing.assert_allclose(at(q, 0), q[0])
    x = rng.normal(size=(2, 3, 6, d))
    whole = ops_llama.rope(x, theta)
    np.testing.assert_allclose(ops_llama.rope(x[..., 4:, :], theta, first=4), whole[..., 4:, :])


def test_rope_backward_is_the_inverse_rotation(rng):
    x = rng.normal(size=(2, 2, 5, 6))
    dy = rng.normal(size=x.shape)

    def f():
        return float(np.sum(dy * ops_llama.rope(x, 500_000.0, 3)))

    assert_close_at(f, x, ops_llama.rope_backward(dy, 500_000.0, 3), rng)
    back = ops_llama.rope_backward(ops_llama.rope(x, 500_000.0, 3), 500_000.0, 3)
    np.testing.assert_allclose(back, x, atol=1e-12)


def test_the_ops_are_memory_bound_kernels_on_shape_only_arrays():
    x = ShapeArray((2, 16, 64), "bf16")
    with recording() as tape:
        assert ops_llama.rmsnorm(x, ShapeArray((64,), "bf16"), 1e-5) == x
        assert ops_llama.swiglu(x) == ShapeArray((2, 16, 32), "bf16")
        assert ops_llama.rope(x, 1e4) == x
    kernels = tape.kernels()
    assert [k.name for k in kernels] == ["rmsnorm", "swiglu", "rope"]
    assert all(k.flops == 0 for k in kernels)
    assert kernels[1].bytes == x.nbytes * 1.5  # reads [gate | up], writes one half


def test_rope_at_listed_positions_rotates_as_the_whole_sequence_does(rng):
    """A context-parallel rank holds positions 0-1 and 6-7 of 8: rotating them by their
    positions gives those rows of the whole sequence's rotation, and back."""
    x = rng.normal(size=(2, 3, 8, 4))
    where = np.array([0, 1, 6, 7])
    whole = ops_llama.rope(x, 10_000.0)
    part = ops_llama.rope(x[..., where, :], 10_000.0, where)
    np.testing.assert_allclose(part, whole[..., where, :], rtol=1e-14)
    back = ops_llama.rope_backward(part, 10_000.0, where)
    np.testing.assert_allclose(back, x[..., where, :], rtol=1e-12, atol=1e-14)
