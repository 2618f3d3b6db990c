"""LayerNorm: gradients, and it stashes its input only."""

import numpy as np

from simulator.nn.norm import LayerNorm
from simulator.ops.arrays import ShapeArray, tree_bytes
from tests.gradcheck import check_layer


def test_layernorm_gradients():
    rng = np.random.default_rng(0)
    ln = LayerNorm("ln", 6, rng, "float64")
    ln.gamma.value[:] = rng.normal(size=6)
    ln.beta.value[:] = rng.normal(size=6)
    check_layer(ln, rng.normal(size=(2, 3, 6)))


def test_layernorm_saves_its_input_and_nothing_else():
    x = ShapeArray((4, 8, 16), "bf16")
    _, ctx = LayerNorm("ln", 16, None, "bf16").forward(x)
    assert ctx is x
    assert tree_bytes(ctx) == 2 * 4 * 8 * 16
