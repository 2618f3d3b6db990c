"""Embeddings and the tied output layer."""

import numpy as np

from simulator.nn.context import BatchInfo, batch
from simulator.nn.embedding import Embedding, TiedLogits
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording
from tests.gradcheck import check_layer


def test_embedding_gradients_with_dropout():
    rng = np.random.default_rng(0)
    emb = Embedding.create("emb", 7, 6, 4, 0.2, rng, "float64", std=1.0)
    tokens = rng.integers(7, size=(3, 5))
    with batch(BatchInfo(seed=0, step=2, first_sample=0, size=3)):
        check_layer(emb, tokens, check_input=False)
        y, _ = emb.forward(tokens)
    assert y.shape == (3, 5, 4)


def test_logits_gradients_reach_the_borrowed_table():
    rng = np.random.default_rng(1)
    emb = Embedding.create("emb", 7, 6, 4, 0.0, rng, "float64", std=1.0)
    head = TiedLogits("logits", emb.weight)
    assert head.weight is emb.weight and head.parameters() == []
    check_layer(head, rng.normal(size=(2, 3, 4)), params=[emb.weight])


def test_both_uses_accumulate_into_one_gradient():
    rng = np.random.default_rng(2)
    emb = Embedding.create("emb", 7, 6, 4, 0.0, rng, "float64", std=1.0)
    head = TiedLogits("logits", emb.weight)
    tokens = rng.integers(7, size=(2, 3))
    dy = rng.normal(size=(2, 3, 7))
    hidden, ectx = emb.forward(tokens)
    _, hctx = head.forward(hidden)
    emb.weight.zero_grad()
    emb.backward(head.backward(dy, hctx), ectx)
    from_head = dy.reshape(-1, 7).T @ hidden.reshape(-1, 4)
    from_lookup = np.zeros((7, 4))
    np.add.at(from_lookup, tokens.reshape(-1), (dy @ emb.weight.value).reshape(-1, 4))
    np.testing.assert_allclose(emb.weight.grad, from_head + from_lookup)


def test_shape_only_embedding_is_not_a_gemm():
    emb = Embedding.create("emb", 50, 8, 16, 0.1, None, "bf16")
    with recording() as tape:
        y, ctx = emb.forward(ShapeArray((2, 8), "int64"))
        emb.backward(y, ctx)
    assert y == ShapeArray((2, 8, 16), "bf16")
    assert tape.flops() == 0
