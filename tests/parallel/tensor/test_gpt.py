"""The GPT over tensor-parallel groups, with and without sequence parallelism.

Single-device training is the oracle: Megatron-LM's split by heads, by the
MLP's inner size and by the vocabulary (Shoeybi et al. 2019, sec. 3), and
Korthikanti et al.'s split of the rest along the sequence (2022, sec. 4.2.2),
compute the same sums in another order, dropout masks included.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.hardware import preset
from simulator.nn.context import BatchInfo, batch
from simulator.nn.cross_entropy import CrossEntropyLoss
from simulator.nn.gpt import GPTConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.tensor import shard_block, shard_loss
from simulator.parallel.training import TrainingConfig
from tests.conftest import assert_matches_single, run

GPT = GPTConfig(layers=2, hidden=16, heads=4, seq_len=8, vocab=32, dropout=0.1)
TRAINING = {"global_batch": 8, "steps": 2, "optimizer": "adam", "lr": 1e-2}


@pytest.fixture(scope="module")
def single():
    return run(GPT, Strategy("single"), **TRAINING)


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("tp2", tp=2),
        Strategy("tp4", tp=4),
        Strategy("tp2-sp", tp=2, sequence_parallel=True),
        Strategy("tp4-sp", tp=4, sequence_parallel=True),
        Strategy("tp2-pp2", tp=2, pp=2, microbatches=2),
        Strategy("tp2-sp-pp2", tp=2, pp=2, microbatches=4, sequence_parallel=True),
        Strategy("tp2-sp-full", tp=2, sequence_parallel=True, recompute="full", microbatches=2),
        Strategy("tp4-selective", tp=4, recompute="selective"),
        Strategy("tp2-sp-selective", tp=2, sequence_parallel=True, recompute="selective"),
        Strategy("dp2-tp2-sp", dp=2, tp=2, sequence_parallel=True),
    ],
    ids=lambda s: s.name,
)
def test_the_gpt_reproduces_single_device_training(single, strategy):
    assert_matches_single(run(GPT, strategy, **TRAINING), single)


def plan_of(strategy: Strategy):
    return build_plan(preset("toy"), GPT, TrainingConfig(global_batch=4, steps=1), strategy)


def test_each_rank_shares_one_shard_of_the_tied_table_between_embedding_and_logits():
    (worker,) = plan_of(Strategy("tp4", tp=4)).workers
    blocks = worker.chunks[0].blocks
    embedding, head = blocks[0], blocks[-1]
    for r in range(4):
        (shard,) = head.borrowed(r)
        rows = GPT.padded_vocab(4) // 4  # the table is padded as Megatron-LM pads it
        assert shard is embedding.params(r)[0] and shard.shape == (rows, 16)
        assert all(p is not shard for p in head.params(r))
    full = embedding.full_params()["embedding.wte"]
    assert full.shape == (GPT.padded_vocab(), 16) and "embedding.wte" not in head.full_params()


def test_a_pipeline_gives_each_rank_of_the_head_its_own_copy_of_the_shard():
    plan = plan_of(Strategy("tp2-pp2", tp=2, pp=2, microbatches=2))
    embedding = plan.workers[0].chunks[0].blocks[0]
    head = plan.workers[1].chunks[1].blocks[-1]
    (pair,) = plan.tied
    assert (pair.owner, pair.user) == (0, 1) and [r for r, _, _ in pair.params] == [0, 1]
    for r, original, copy in pair.params:
        assert original is embedding.params(r)[0]
        assert copy is not original and copy.name == "embedding.wte" and copy in head.params(r)
        np.testing.assert_array_equal(copy.value, original.value)
        assert head.borrowed(r) == []


@settings(max_examples=20, deadline=None)
@given(t=st.integers(1, 4), words=st.integers(1, 5), seed=st.integers(0, 1000))
def test_vocabulary_parallel_cross_entropy_is_the_single_device_loss(t, words, seed):
    rng = np.random.default_rng(seed)
    vocab = t * words
    logits = rng.normal(size=(2, 5, vocab)) * 3
    targets = rng.integers(vocab, size=(2, 5))
    loss = CrossEntropyLoss()
    value, ctx = loss.forward(logits, targets)
    grad = loss.backward(ctx, 0.5)
    sharded = shard_loss(loss, t)
    shards = [logits[..., r * words : (r + 1) * words] for r in range(t)]
    values, ctxs = sharded.forward(shards, [targets] * t)
    np.testing.assert_allclose(values, [value] * t, rtol=1e-13)
    grads = sharded.backward(ctxs, 0.5)
    np.testing.assert_allclose(np.concatenate(grads, -1), grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_vocabulary_parallel_embedding_adds_up_to_the_single_device_one(sequence_parallel):
    model = GPT.build(seed=0, numerics=True)
    tokens, _ = GPT.batch(0, 0, 3, numerics=True)
    with batch(BatchInfo(seed=0, step=0, first_sample=0, size=3)):
        whole, _ = model.blocks[0].forward(tokens)
        parts, _ = shard_block(model.blocks[0], 4, sequence_parallel).forward([tokens] * 4)
    got = np.concatenate(parts, axis=1) if sequence_parallel else parts[0]
    np.testing.assert_allclose(got, whole, rtol=1e-12)
