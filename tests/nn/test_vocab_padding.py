"""Megatron-LM's vocabulary padding: any tp runs, costs count the padded words,
and every layout still trains exactly like one device."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import GPTConfig, Strategy
from simulator.nn.embedding import padded_vocab
from tests.conftest import assert_matches_single, run, single_device

TRAINING = {"global_batch": 8, "steps": 2, "optimizer": "adam", "lr": 0.01}


@pytest.mark.parametrize(
    ("tp", "rows"), [(1, 50304), (2, 50432), (4, 50688), (8, 51200), (3, 50304)]
)
def test_gpt2_vocabulary_pads_as_megatron_does(tp: int, rows: int) -> None:
    """``_vocab_size_with_padding``: up to a multiple of 128 x tp."""
    assert padded_vocab(50257, 128, tp) == rows
    assert GPTConfig(vocab=50257).padded_vocab(tp) == rows
    assert padded_vocab(50257, 1, tp) % tp == 0


def test_a_tp_that_does_not_divide_50257_runs_and_counts_the_padded_words() -> None:
    config = GPTConfig(layers=1, hidden=64, heads=4, seq_len=16, vocab=50257, dtype="bf16")
    b, t = 2, 4
    result = run(config, Strategy("tp4", tp=t), numerics=False, global_batch=b, steps=1)
    worker = result.plan.workers[0]
    rows = config.padded_vocab(t)  # 50688
    assert {p.shape for r in range(t) for p in worker.params(r) if p.name == "embedding.wte"} == {
        (rows // t, 64)
    }
    # the logits GEMM forward, backward-input and backward-weight over the padded words
    L, h, s = config.layers, config.hidden, config.seq_len
    eq7 = 72 * b * L * s * h**2 * (1 + s / (6 * h) + rows / (12 * h * L))
    assert result.metrics["model_flops_per_iteration"] == pytest.approx(eq7, rel=1e-9)


GPT = GPTConfig(layers=2, hidden=16, heads=4, seq_len=8, vocab=30, dropout=0.1)


@pytest.fixture(scope="module", params=[1, 128], ids=["unit1", "unit128"])
def config(request) -> GPTConfig:
    return GPTConfig(**{**GPT.__dict__, "make_vocab_size_divisible_by": request.param})


@pytest.fixture(scope="module")
def single(config):
    return single_device(config, **TRAINING)


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("tp4", tp=4, microbatches=2),
        Strategy("tp4-sp", tp=4, sequence_parallel=True),
        Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2, zero=1),
        Strategy("tp4-pp2", tp=4, pp=2, microbatches=2),
    ],
    ids=lambda s: s.name,
)
def test_padding_leaves_training_exactly_as_on_one_device(config, single, strategy) -> None:
    """30 words do not divide over 4 ranks; the padded words take no probability, so
    the losses and weights are the single-device ones."""
    assert_matches_single(run(config, strategy, **TRAINING), single)


def test_padded_words_take_no_probability_and_stay_zero(config) -> None:
    model = config.build(seed=0, numerics=True)
    table = model.blocks[0].weight
    assert table.shape[0] == config.padded_vocab() >= config.vocab
    tokens, targets = config.batch(0, 0, 2, numerics=True)
    x = tokens
    ctxs = []
    for block in model.blocks:
        x, ctx = block.forward(x)
        ctxs.append(ctx)
    assert np.all(np.isneginf(x[..., config.vocab :]))
    loss, lctx = model.loss.forward(x, targets)
    dy = model.loss.backward(lctx, 1.0)
    assert np.all(dy[..., config.vocab :] == 0)
    for block, ctx in zip(reversed(model.blocks), reversed(ctxs), strict=True):
        dy = block.backward(dy, ctx)
    assert np.all(table.value[config.vocab :] == 0) and np.all(table.grad[config.vocab :] == 0)
    # the unpadded model: the same draws, the same loss
    plain = GPTConfig(**{**config.__dict__, "make_vocab_size_divisible_by": 1})
    assert plain.padded_vocab() == 30
    reference = plain.build(seed=0, numerics=True)
    np.testing.assert_array_equal(reference.blocks[0].weight.value, table.value[:30])
    y = tokens
    for block in reference.blocks:
        y, _ = block.forward(y)
    assert reference.loss.forward(y, targets)[0] == pytest.approx(loss, rel=1e-12)
