"""The transformer layer: gradients, FLOPs and the activation bytes it stashes.

Stash formulas: Korthikanti et al. 2022, "Reducing Activation Recomputation in
Large Transformer Models", sec. 4.1 and table 2 (16-bit, one-byte masks).
"""

import numpy as np
import pytest

from simulator.nn.context import BatchInfo, batch
from simulator.nn.transformer import TransformerLayer
from simulator.ops.arrays import ShapeArray, tree_bytes
from simulator.ops.tape import recording
from simulator.parallel.stage import Chunk
from simulator.parallel.tensor import ShardMap
from tests.gradcheck import check_layer

SIZES = [(8, 2, 16, 4), (32, 3, 24, 2), (2048, 1, 12288, 96)]  # (s, b, h, a); the last: GPT-3


def layer(h, a, dropout=0.1, dtype="bf16", rng=None):
    return TransformerLayer.create(0, h, a, 4, dropout, 2, rng, dtype)


def test_gradients_with_dropout():
    rng = np.random.default_rng(0)
    block = layer(8, 2, dropout=0.1, dtype="float64", rng=rng)
    for p in block.parameters():  # non-trivial layer norms and biases too
        p.value[...] = rng.normal(size=p.shape) * 0.5
    with batch(BatchInfo(seed=5, step=1, first_sample=2, size=2)):
        check_layer(block, rng.normal(size=(2, 5, 8)))


def test_parameters_are_12h2_plus_13h():
    h = 24
    assert sum(p.size for p in layer(h, 4).parameters()) == 12 * h * h + 13 * h


@pytest.mark.parametrize(("s", "b", "h", "a"), SIZES)
def test_stash_is_sbh_34_plus_5as_over_h(s, b, h, a):
    _, ctx = layer(h, a).forward(ShapeArray((b, s, h), "bf16"))
    assert tree_bytes(ctx) == s * b * h * 34 + 5 * a * s * s * b  # = sbh(34 + 5as/h)


def test_numerics_stash_the_same_arrays_in_8_byte_floats():
    """Q, K and V are views of one QKV output there; each byte is still counted once."""
    s, b, h, a = SIZES[1]
    block = layer(h, a, dtype="float64", rng=np.random.default_rng(0))
    with batch(BatchInfo(seed=0, step=0, first_sample=0, size=b)):
        _, ctx = block.forward(np.zeros((b, s, h)))
    floats, masks = 16 * s * b * h + 2 * a * s * s * b, 2 * s * b * h + a * s * s * b
    assert tree_bytes(ctx) == 8 * floats + masks


def test_without_dropout_the_masks_and_the_dropout_copy_are_gone():
    s, b, h, a = SIZES[0]
    _, ctx = layer(h, a, dropout=0.0).forward(ShapeArray((b, s, h), "bf16"))
    assert tree_bytes(ctx) == s * b * h * 32 + 2 * a * s * s * b


@pytest.mark.parametrize(("s", "b", "h", "a"), SIZES)
def test_selective_recomputation_stashes_34sbh(s, b, h, a):
    block = layer(h, a)
    block.selective = True
    x = ShapeArray((b, s, h), "bf16")
    y, ctx = block.forward(x)
    assert tree_bytes(ctx) == 34 * s * b * h
    with recording() as tape:
        block.backward(y, ctx)
    assert tape.flops(tag="recompute") == 4 * b * s * s * h


@pytest.mark.parametrize(("s", "b", "h", "a"), SIZES)
def test_full_recomputation_stashes_the_layer_input(s, b, h, a):
    chunk = Chunk(0, [ShardMap([layer(h, a)])], None, recompute="full")
    _, ctx = chunk.forward([ShapeArray((b, s, h), "bf16")])
    assert chunk.stash_bytes(ctx, 0) == 2 * s * b * h


@pytest.mark.parametrize(("s", "b", "h", "a"), SIZES)
def test_flops_forward_24bsh2_plus_4bs2h_and_backward_twice(s, b, h, a):
    block = layer(h, a)
    with recording() as fwd:
        y, ctx = block.forward(ShapeArray((b, s, h), "bf16"))
    with recording() as bwd:
        block.backward(y, ctx)
    assert fwd.flops() == 24 * b * s * h * h + 4 * b * s * s * h
    assert bwd.flops() == 2 * fwd.flops()


def test_selective_recomputation_changes_no_number():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 8))
    dy = rng.normal(size=x.shape)
    grads = []
    for selective in (False, True):
        block = layer(8, 2, dropout=0.2, dtype="float64", rng=np.random.default_rng(4))
        block.selective = selective
        with batch(BatchInfo(seed=1, step=0, first_sample=0, size=2)):
            y, ctx = block.forward(x)
            dx = block.backward(dy, ctx)
        grads.append([y, dx, *(p.grad for p in block.parameters())])
    for plain, selective in zip(*grads, strict=True):
        np.testing.assert_array_equal(plain, selective)
