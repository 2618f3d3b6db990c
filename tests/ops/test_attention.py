"""FlashAttention as one kernel: the numbers of the materialised core, the papers' FLOPs,
and partial attentions that merge exactly (the hook for chunked and ring attention)."""

import numpy as np
import pytest

from simulator.ops import functional as ops_nn
from simulator.ops.arrays import ShapeArray
from simulator.ops.attention import (
    block_pairs,
    block_softmax,
    block_softmax_backward,
    causal_credit,
    flash_attention,
    flash_attention_backward,
    merge_attention,
    merge_groups,
    rescale_rows,
    split_groups,
    visible_pairs,
)
from simulator.ops.tape import recording
from tests.gradcheck import assert_close_at

B, KV, G, S, D = 2, 2, 3, 5, 4


@pytest.fixture
def qkv():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(B, KV, G, S, D)),
        rng.normal(size=(B, KV, 1, S, D)),
        rng.normal(size=(B, KV, 1, S, D)),
    )


def materialised(q, k, v, scale):
    scores = np.broadcast_to(q @ k.swapaxes(-1, -2), (B, KV, G, S, S))
    probs = ops_nn.causal_softmax(scores.reshape(B, KV * G, S, S), scale)
    return probs.reshape(B, KV, G, S, S) @ v


def test_flash_gives_the_materialised_attention_and_gradients(qkv):
    q, k, v = qkv
    out, lse = flash_attention(q, k, v, 0.5)
    np.testing.assert_allclose(out, materialised(q, k, v, 0.5), rtol=1e-13, atol=1e-14)
    dout = np.random.default_rng(1).normal(size=out.shape)
    grads = flash_attention_backward(dout, q, k, v, out, lse, 0.5)
    rng = np.random.default_rng(2)
    for x, g in zip(qkv, grads, strict=True):

        def f():
            return float(np.sum(dout * flash_attention(q, k, v, 0.5)[0]))

        assert_close_at(f, x, g, rng)


def test_partial_attentions_over_key_blocks_merge_into_the_whole(qkv):
    q, k, v = qkv
    out, lse = flash_attention(q, k, v, 0.5)
    first = flash_attention(q, k[..., :2, :], v[..., :2, :], 0.5, q_start=0, k_start=0)
    second = flash_attention(q, k[..., 2:, :], v[..., 2:, :], 0.5, q_start=0, k_start=2)
    merged, merged_lse = merge_attention(*first, *second)
    np.testing.assert_allclose(merged, out, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(merged_lse, lse, rtol=1e-13)
    # queries 0 and 1 see no key of the second block: it must not change them
    assert np.all(np.isneginf(second[1][..., :2]))


def test_flops_are_the_papers_and_the_model_is_credited_in_full():
    q = ShapeArray((B, KV, G, 8, D), "bf16")
    k = ShapeArray((B, KV, 1, 8, D), "bf16")
    with recording() as tape:
        out, lse = flash_attention(q, k, k, 0.5)
        flash_attention_backward(out, q, k, k, out, lse, 0.5)
    forward, backward = tape.kernels()
    full = 4 * B * KV * G * 8 * 8 * D  # Dao 2023, sec. 4.1: 4 s^2 d per head
    assert (forward.op_class, forward.flops, forward.model_flops) == ("attention", full / 2, full)
    assert (backward.flops, backward.model_flops) == (2.5 * full / 2, 2 * full)
    assert lse == ShapeArray((B, KV, G, 8), "float32")  # the softmax statistics, FP32


def test_visible_pairs_of_causal_blocks():
    assert visible_pairs(4, 4) == 8  # a diagonal block: half, as the papers count it
    assert visible_pairs(4, 4, q_start=4, k_start=0) == 16  # keys all in the past
    assert visible_pairs(4, 4, q_start=0, k_start=4) == 0  # keys all in the future
    assert visible_pairs(4, 2, q_start=0, k_start=2) == 0 + 0 + 1 + 2


def test_grouped_heads_split_and_merge_back(qkv):
    q, k, v = qkv
    merged = merge_groups(q, k, v)
    assert merged.shape == (B, S, KV * (G + 2) * D)
    for a, b in zip(split_groups(merged, KV, G), (q, k, v), strict=True):
        np.testing.assert_array_equal(a, b)
    # one query per group is GPT's head-major [head, (q, k, v), d] layout
    x = np.random.default_rng(3).normal(size=(2, 3, 4 * 3 * 2))
    for a, b in zip(split_groups(x, 4, 1), ops_nn.split_heads(x, 4, 3), strict=True):
        np.testing.assert_array_equal(a[:, :, 0], b)


def test_a_diagonal_after_full_blocks_counts_half_and_credits_add_up():
    # the keys of a chunk's queries: every earlier one, and its own diagonal
    assert visible_pairs(4, 12, q_start=8, k_start=0) == 4 * 8 + 16 / 2
    spans = ((0, 2), (6, 2))  # a context-parallel rank's two chunks of an 8-token sequence
    assert block_pairs(4, 4, spans, spans) == 2 + 4 + 2
    # blocks of one causal attention credit the formula's whole s x s between them
    blocks = [((0, 4), (0, 4)), ((4, 4), (0, 4)), ((4, 4), (4, 4))]
    credited = sum(causal_credit(4, 4, q, k) * 16 for (q, _), (k, _) in blocks)
    assert credited == 8 * 8
    assert causal_credit(8, 8) == 1.0  # one block: as the single-device kernel


def test_materialised_blocks_give_the_whole_softmax_and_its_gradient(qkv):
    """Scores of two key blocks, each softmaxed over its own keys, rescaled by their
    log-sum-exp, are the row's softmax; the block gradient is the row's."""
    q, k, _ = qkv
    scale = 0.5
    scores = q @ k.swapaxes(-1, -2)
    probs, lse = block_softmax(scores[..., :2], scale, 0, 0)
    later, later_lse = block_softmax(scores[..., 2:], scale, 0, 2)
    whole = ops_nn.causal_softmax(
        np.broadcast_to(scores, (B, KV, G, S, S)).reshape(B, KV * G, S, S), scale
    ).reshape(B, KV, G, S, S)
    total = np.logaddexp(lse, later_lse)
    joined = np.concatenate(
        [rescale_rows(probs, lse, total, "r"), rescale_rows(later, later_lse, total, "r")], -1
    )
    np.testing.assert_allclose(joined, whole, rtol=1e-12, atol=1e-15)
    dprobs = np.random.default_rng(3).normal(size=whole.shape)
    rows = (dprobs * whole).sum(-1)
    full = scale * whole * (dprobs - rows[..., None])
    part = block_softmax_backward(dprobs[..., 2:], later, later_lse, total, rows, scale)
    np.testing.assert_allclose(part, full[..., 2:], rtol=1e-12, atol=1e-15)


def test_flash_blocks_at_runs_of_positions_mask_by_position(qkv):
    q, k, v = qkv
    out, lse = flash_attention(q, k, v, 0.5)
    runs = ((0, 2), (3, 2))  # positions 0 1 3 4 of the five
    rows = [0, 1, 3, 4]
    part, part_lse = flash_attention(q[..., rows, :], k[..., rows, :], v[..., rows, :], 0.5,
                                     q_start=runs, k_start=runs)  # fmt: skip
    # the queries at 0 and 1 see exactly what they see in the whole sequence
    np.testing.assert_allclose(part[..., :2, :], out[..., :2, :], rtol=1e-13)
    missing = flash_attention(q[..., 3:, :], k[..., 2:3, :], v[..., 2:3, :], 0.5,
                              q_start=3, k_start=2)  # fmt: skip
    merged, merged_lse = merge_attention(part[..., 2:, :], part_lse[..., 2:], *missing)
    np.testing.assert_allclose(merged, out[..., 3:, :], rtol=1e-12)
    np.testing.assert_allclose(merged_lse, lse[..., 3:], rtol=1e-12)
