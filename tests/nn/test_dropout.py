"""Dropout masks are a function of the sample, not of how the batch is split."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.nn.context import BatchInfo, batch
from simulator.nn.dropout import Dropout
from simulator.ops.arrays import ShapeArray, tree_bytes
from tests.gradcheck import check_layer


def masks_for(drop: Dropout, x: np.ndarray, first: int, step: int = 3) -> np.ndarray:
    with batch(BatchInfo(seed=7, step=step, first_sample=first, size=x.shape[0])):
        return drop.mask(x)


@settings(max_examples=25, deadline=None)
@given(
    total=st.integers(1, 8),
    cuts=st.lists(st.integers(0, 8), max_size=4),
    first=st.integers(0, 1000),
)
def test_masks_are_identical_under_any_split_of_the_batch(total, cuts, first):
    drop = Dropout(0.3, layer=2, site="mlp_out")
    x = np.zeros((total, 4, 6))
    whole = masks_for(drop, x, first)
    bounds = sorted({0, total, *(c for c in cuts if c <= total)})
    pieces = [masks_for(drop, x[lo:hi], first + lo) for lo, hi in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_masks_differ_between_steps_layers_and_sites():
    x = np.zeros((2, 16, 16))
    base = masks_for(Dropout(0.5, 0, "mlp_out"), x, 0)
    assert not np.array_equal(base, masks_for(Dropout(0.5, 0, "mlp_out"), x, 0, step=4))
    assert not np.array_equal(base, masks_for(Dropout(0.5, 1, "mlp_out"), x, 0))
    assert not np.array_equal(base, masks_for(Dropout(0.5, 0, "attention_out"), x, 0))
    assert base[0].mean() == pytest.approx(0.5, abs=0.1)


@settings(max_examples=20, deadline=None)
@given(parts=st.integers(1, 4), rank=st.integers(0, 3))
def test_a_window_is_the_same_slice_of_the_full_mask(parts, rank):
    rank %= parts
    heads, s = 8, 5
    drop = Dropout(0.2, 1, "attention_probs")
    whole = masks_for(drop, np.zeros((3, heads, s, s)), 10)
    lo, hi = rank * heads // parts, (rank + 1) * heads // parts
    shard = drop.sliced((slice(lo, hi),), (heads, s, s))
    np.testing.assert_array_equal(
        masks_for(shard, np.zeros((3, hi - lo, s, s)), 10), whole[:, lo:hi]
    )
    # a sequence-parallel window over positions of a (b, s, h) activation
    hidden = Dropout(0.2, 1, "mlp_out")
    whole = masks_for(hidden, np.zeros((3, 12, 4)), 10)
    lo, hi = rank * 12 // parts, (rank + 1) * 12 // parts
    shard = hidden.sliced((slice(lo, hi),), (12, 4))
    part = masks_for(shard, np.zeros((3, hi - lo, 4)), 10)
    np.testing.assert_array_equal(part, whole[:, lo:hi])


def test_a_window_that_does_not_fit_the_input_is_an_error():
    shard = Dropout(0.2, 1, "mlp_out").sliced((slice(0, 3),), (12, 4))
    with pytest.raises(ValueError, match="per sample"):
        masks_for(shard, np.zeros((2, 4, 4)), 0)


def test_forward_saves_only_the_mask_and_gradients_check():
    drop = Dropout(0.25, 0, "attention_out")
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    with batch(BatchInfo(seed=1, step=0, first_sample=4, size=2)):
        y, ctx = drop.forward(x)
        assert ctx.dtype == np.uint8 and tree_bytes(ctx) == x.size
        np.testing.assert_allclose(y, x * ctx / 0.75)
        check_layer(drop, x)


def test_zero_probability_is_the_identity_and_saves_nothing():
    x = np.ones((2, 3))
    y, ctx = Dropout(0.0, 0, "embedding").forward(x)
    assert y is x and ctx is None


def test_shape_only_masks_are_uint8():
    y, mask = Dropout(0.1, 0, "mlp_out").forward(ShapeArray((2, 8, 16), "bf16"))
    assert mask == ShapeArray((2, 8, 16), "uint8")
    assert y == ShapeArray((2, 8, 16), "bf16")


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_bad_probability_is_rejected(p):
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(p, 0, "mlp_out")


def test_windows_compose_and_may_list_positions():
    """A context-parallel rank's positions (0, 1, 6, 7 of 8), then a sequence-parallel
    rank's half of them, then an attention block's query and key positions inside a
    tensor-parallel rank's heads: each the same part of the single-device mask."""
    hidden = Dropout(0.3, 1, "mlp_out")
    whole = masks_for(hidden, np.zeros((2, 8, 4)), 5)
    where = np.array([0, 1, 6, 7])
    mine = hidden.sliced((where,), (8,))
    np.testing.assert_array_equal(masks_for(mine, np.zeros((2, 4, 4)), 5), whole[:, where])
    half = mine.sliced((slice(2, 4),), (4,))
    np.testing.assert_array_equal(masks_for(half, np.zeros((2, 2, 4)), 5), whole[:, [6, 7]])
    probs = Dropout(0.3, 1, "attention_probs")
    full = masks_for(probs, np.zeros((2, 6, 8, 8)), 5)
    heads = probs.sliced((slice(2, 4),), (6,))
    block = heads.sliced((slice(None), where, slice(0, 2)), (2, 8, 8))
    got = masks_for(block, np.zeros((2, 2, 4, 2)), 5)
    np.testing.assert_array_equal(got, full[:, 2:4][:, :, where][:, :, :, 0:2])
