"""The transformer ops: values, gradients, and what they charge to the tape."""

import math

import numpy as np
import pytest

from simulator.ops import functional as ops_nn
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording
from tests.gradcheck import assert_close_at


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_layernorm_matches_definition_and_gradients(rng):
    x = rng.normal(size=(2, 3, 6))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    y = ops_nn.layernorm(x, gamma, beta, 1e-5)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * gamma + beta)

    dy = rng.normal(size=x.shape)

    def f():
        return float(np.sum(dy * ops_nn.layernorm(x, gamma, beta, 1e-5)))

    dgamma, dbeta = ops_nn.layernorm_weight_grad(dy, x, 1e-5)
    assert_close_at(f, x, ops_nn.layernorm_backward(dy, x, gamma, 1e-5), rng)
    assert_close_at(f, gamma, dgamma, rng)
    assert_close_at(f, beta, dbeta, rng)


def test_causal_softmax_masks_the_future_and_has_the_right_gradient(rng):
    scores = rng.normal(size=(2, 3, 5, 5))
    p = ops_nn.causal_softmax(scores, 0.5)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert np.all(p[..., np.triu_indices(5, k=1)[0], np.triu_indices(5, k=1)[1]] == 0)
    # row i is the softmax of the scaled scores of keys 0..i
    row = 0.5 * scores[1, 2, 3, :4]
    np.testing.assert_allclose(p[1, 2, 3, :4], np.exp(row) / np.exp(row).sum())

    dp = rng.normal(size=p.shape)

    def f():
        return float(np.sum(dp * ops_nn.causal_softmax(scores, 0.5)))

    assert_close_at(f, scores, ops_nn.softmax_backward(dp, p, 0.5), rng)


def test_cross_entropy_value_and_gradient(rng):
    logits = rng.normal(size=(2, 3, 7))
    targets = rng.integers(7, size=(2, 3))
    loss, probs = ops_nn.cross_entropy(logits, targets)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(np.take_along_axis(logp, targets[..., None], -1))
    assert loss == pytest.approx(expected)

    def f():
        return float(0.25 * ops_nn.cross_entropy(logits, targets)[0])

    assert_close_at(f, logits, ops_nn.cross_entropy_backward(probs, targets, 0.25), rng)


def test_embedding_backward_scatter_adds_repeated_rows(rng):
    table = rng.normal(size=(5, 3))
    ids = np.array([[1, 4, 1], [0, 1, 4]])
    np.testing.assert_array_equal(ops_nn.embedding(ids, table), table[ids])
    dy = rng.normal(size=(2, 3, 3))

    def f():
        return float(np.sum(dy * ops_nn.embedding(ids, table)))

    grad = ops_nn.embedding_backward(ids, dy, 5)
    np.testing.assert_allclose(grad[1], dy[0, 0] + dy[0, 2] + dy[1, 1])
    assert_close_at(f, table, grad, rng)
    # ids broadcast over the batch, as position ids do
    positions = np.arange(3)[None, :]
    np.testing.assert_allclose(ops_nn.embedding_backward(positions, dy, 4)[:3], dy.sum(0))


def test_heads_split_head_major_and_merge_back(rng):
    b, s, heads, d = 2, 3, 4, 5
    x = rng.normal(size=(b, s, heads * 3 * d))
    q, k, v = ops_nn.split_heads(x, heads, 3)
    assert q.shape == (b, heads, s, d)
    # head 2's key is the second d-block of head 2's three blocks
    np.testing.assert_array_equal(k[:, 2], x[:, :, 2 * 3 * d + d : 2 * 3 * d + 2 * d])
    np.testing.assert_array_equal(ops_nn.merge_heads(q, k, v), x)
    assert q.base is not None  # a view: splitting copies nothing


def test_dropout_writes_a_one_byte_mask():
    x = ShapeArray((4, 8), "bf16")
    mask = ShapeArray((4, 8), "uint8")
    with recording() as tape:
        ops_nn.dropout(x, mask, 0.1)
        ops_nn.dropout_backward(x, mask, 0.1)
    fwd, bwd = tape.kernels()
    assert fwd.bytes == bwd.bytes == 32 * (2 + 1 + 2)


def test_shape_only_ops_count_no_flops_and_every_byte():
    b, s, h, a, v = 2, 8, 16, 4, 50
    x = ShapeArray((b, s, h), "bf16")
    w = ShapeArray((h,), "bf16")
    scores = ShapeArray((b, a, s, s), "bf16")
    ids = ShapeArray((b, s), "int64")
    logits = ShapeArray((b, s, v), "bf16")
    with recording() as tape:
        assert ops_nn.layernorm(x, w, w, 1e-5).shape == x.shape
        assert ops_nn.causal_softmax(scores, 1.0).shape == scores.shape
        assert ops_nn.embedding(ids, ShapeArray((v, h), "bf16")).shape == (b, s, h)
        loss, probs = ops_nn.cross_entropy(logits, ids)
        assert loss.shape == () and probs.shape == logits.shape
    assert tape.flops() == 0
    kernels = {k.name: k for k in tape.kernels()}
    assert kernels["layernorm"].bytes == 2 * (2 * b * s * h + 2 * h)
    assert kernels["causal_softmax"].op_class == "normalization"
    assert kernels["causal_softmax"].bytes == 2 * 2 * math.prod(scores.shape)
    assert kernels["embedding"].bytes == 8 * b * s + 2 * 2 * b * s * h
