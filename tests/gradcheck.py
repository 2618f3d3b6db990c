"""Finite-difference gradient checks for layers and whole models (float64).

The scalar checked is ``sum(R * f(...))`` for a fixed random ``R``, whose
gradient w.r.t. the output is ``R``; central differences of it are compared
with the analytic gradients at a few random entries of every array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.nn.param import Param


def numeric(f: Callable[[], float], array: np.ndarray, index: tuple, eps: float = 1e-6) -> float:
    """Central difference of ``f`` w.r.t. ``array[index]`` (changed in place, then restored)."""
    old = array[index]
    array[index] = old + eps
    up = f()
    array[index] = old - eps
    down = f()
    array[index] = old
    return (up - down) / (2 * eps)


def assert_close_at(
    f: Callable[[], float],
    array: np.ndarray,
    grad: np.ndarray,
    rng: np.random.Generator,
    entries: int = 8,
    rtol: float = 1e-6,
) -> None:
    """``grad`` agrees with central differences of ``f`` at ``entries`` random entries."""
    assert grad.shape == array.shape
    scale = max(1.0, float(np.abs(grad).max()))
    for _ in range(entries):
        index = tuple(int(rng.integers(n)) for n in array.shape)
        expected = numeric(f, array, index)
        assert abs(grad[index] - expected) <= rtol * scale, (index, grad[index], expected)


def check_layer(
    layer,
    x: np.ndarray,
    params: list[Param] | None = None,
    seed: int = 0,
    check_input: bool = True,
) -> None:
    """The layer's input and parameter gradients match finite differences."""
    rng = np.random.default_rng(seed)
    params = layer.parameters() if params is None else params
    y, ctx = layer.forward(x)
    weights = rng.normal(size=y.shape)
    for p in params:
        p.zero_grad()
    dx = layer.backward(weights, ctx)

    def f() -> float:
        return float(np.sum(weights * layer.forward(x)[0]))

    if check_input:
        assert_close_at(f, x, dx, rng)
    for p in params:
        assert_close_at(f, p.value, p.grad, rng)
