"""The attention core: gradients, causality, head slicing, selective recomputation."""

import numpy as np
import pytest

from simulator.nn.attention import AttentionCore
from simulator.nn.context import BatchInfo, batch
from simulator.nn.dropout import Dropout
from simulator.ops.tape import recording
from tests.gradcheck import check_layer

B, S, HEADS, D = 2, 5, 4, 3


def core(p=0.2, heads=HEADS, selective=False):
    return AttentionCore("core", heads, D, Dropout(p, 0, "attention_probs"), selective)


@pytest.fixture
def qkv():
    return np.random.default_rng(0).normal(size=(B, S, HEADS * 3 * D))


@pytest.fixture(autouse=True)
def fixed_batch():
    with batch(BatchInfo(seed=3, step=1, first_sample=6, size=B)):
        yield


def test_gradients_with_dropout(qkv):
    check_layer(core(), qkv)


def test_a_position_never_sees_later_positions(qkv):
    layer = core()
    y, _ = layer.forward(qkv)
    changed = qkv.copy()
    changed[:, 3:] += 1.0
    y2, _ = layer.forward(changed)
    np.testing.assert_array_equal(y[:, :3], y2[:, :3])
    assert not np.allclose(y[:, 3:], y2[:, 3:])


def test_a_share_of_the_heads_computes_its_slice_of_the_output(qkv):
    """What a tensor-parallel rank does: its heads, its slice of the dropout mask."""
    full, _ = core().forward(qkv)
    lo, hi = 1, 3
    share = AttentionCore(
        "core",
        hi - lo,
        D,
        Dropout(0.2, 0, "attention_probs").sliced((slice(lo, hi),), (HEADS, S, S)),
    )
    part, _ = share.forward(qkv[:, :, lo * 3 * D : hi * 3 * D])
    np.testing.assert_allclose(part, full[:, :, lo * D : hi * D])


def test_selective_recomputation_gives_the_same_gradient_for_tagged_flops(qkv):
    dy = np.random.default_rng(1).normal(size=(B, S, HEADS * D))
    plain, selective = core(), core(selective=True)
    y, ctx = plain.forward(qkv)
    ys, ctxs = selective.forward(qkv)
    np.testing.assert_array_equal(y, ys)
    assert len(ctxs) == 3  # Q, K and V only
    dx, _ = plain.backward_input(dy, ctx)
    with recording() as tape:
        dxs, _ = selective.backward_input(dy, ctxs)
    np.testing.assert_array_equal(dx, dxs)
    # the core's whole forward again: scores and values, 2bs^2h FLOPs each
    h = HEADS * D
    assert tape.flops(tag="recompute") == 4 * B * S * S * h
    assert tape.flops() - tape.flops(tag="recompute") == 8 * B * S * S * h
