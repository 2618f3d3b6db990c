"""Finite-difference gradient checks of the basic layers (float64)."""

import numpy as np

from simulator.nn import GELU, Linear, ReLU, Sequential
from simulator.nn.loss import MSELoss
from tests.gradcheck import numeric


def numeric_grad(f, x, eps=1e-6):
    """The finite-difference gradient of ``f`` with respect to every entry of ``x``."""
    return np.array([numeric(f, x, i, eps) for i in np.ndindex(x.shape)]).reshape(x.shape)


def check_layer(layer, x):
    rng = np.random.default_rng(1)
    y, _ = layer.forward(x)
    w = rng.normal(size=y.shape)

    def loss():
        return float(np.sum(layer.forward(x)[0] * w))

    _, ctx = layer.forward(x)
    for p in layer.parameters():
        p.zero_grad()
    dx = layer.backward(w, ctx)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for p in layer.parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.value), rtol=1e-6, atol=1e-8)


def test_linear_relu_gelu_sequential_gradients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5))
    check_layer(Linear.create("fc", 5, 4, rng, "float64"), x)
    check_layer(ReLU(), x + 0.05)  # keep away from the kink
    check_layer(GELU(), x)
    check_layer(
        Sequential(
            "s",
            [
                Linear.create("a", 5, 6, rng, "float64"),
                GELU(),
                Linear.create("b", 6, 2, rng, "float64"),
            ],
        ),
        x,
    )


def test_split_backward_equals_fused_backward():
    rng = np.random.default_rng(0)
    layer = Linear.create("fc", 4, 3, rng, "float64")
    x, dy = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
    _, ctx = layer.forward(x)
    fused = layer.backward(dy, ctx)
    grads = [p.grad.copy() for p in layer.parameters()]
    for p in layer.parameters():
        p.zero_grad()
    dx, wctx = layer.backward_input(dy, ctx)
    assert all(not p.grad.any() for p in layer.parameters())  # B leaves weights alone
    layer.backward_weight(wctx)
    np.testing.assert_array_equal(dx, fused)
    for p, g in zip(layer.parameters(), grads, strict=True):
        np.testing.assert_array_equal(p.grad, g)


def test_mse_gradient():
    rng = np.random.default_rng(2)
    pred, target = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    fn = MSELoss()
    _, ctx = fn.forward(pred, target)
    numeric = numeric_grad(lambda: float(fn.forward(pred, target)[0]), pred)
    np.testing.assert_allclose(fn.backward(ctx, 1.0), numeric, rtol=1e-6)
