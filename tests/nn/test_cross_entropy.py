"""The language-modelling loss."""

import math

import numpy as np
import pytest

from simulator.nn.cross_entropy import CrossEntropyLoss
from tests.gradcheck import assert_close_at


def test_uniform_logits_cost_log_vocab():
    loss, _ = CrossEntropyLoss().forward(np.zeros((2, 3, 11)), np.zeros((2, 3), dtype=np.int64))
    assert loss == pytest.approx(math.log(11))


def test_gradient_is_scaled_mean_over_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5))
    targets = rng.integers(5, size=(2, 4))
    fn = CrossEntropyLoss()
    _, ctx = fn.forward(logits, targets)
    grad = fn.backward(ctx, 0.5)
    np.testing.assert_allclose(grad.sum(-1), 0.0, atol=1e-15)
    assert_close_at(lambda: 0.5 * float(fn.forward(logits, targets)[0]), logits, grad, rng)
