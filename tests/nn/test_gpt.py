"""The GPT model: parameters, FLOPs and training, against the published formulas.

Parameters: Megatron-LM SC21 (Narayanan et al. 2021) eq. 2, plus the final
layer norm's 2h. Model FLOPs: Korthikanti et al. 2022, appendix A, eq. 7.
Hardware FLOPs with full recomputation: Megatron-LM SC21 eq. 3. ``V`` is the
padded vocabulary, as Megatron-LM counts it.
"""

from dataclasses import replace

import numpy as np
import pytest

from simulator.hardware import preset
from simulator.nn.context import BatchInfo, batch
from simulator.nn.gpt import GPTConfig
from simulator.ops.arrays import ShapeArray, tree_bytes
from simulator.ops.tape import recording, tagged
from simulator.parallel import Strategy, build_plan
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime
from tests.gradcheck import assert_close_at

TINY = GPTConfig(layers=2, hidden=8, heads=2, seq_len=5, vocab=11, dropout=0.1)
SMALL = GPTConfig(layers=4, hidden=32, heads=4, seq_len=16, vocab=64, dtype="bf16")
GPT3 = GPTConfig(
    layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200, dropout=0.1, dtype="bf16"
)


def eq2_params(c: GPTConfig) -> float:
    L, h, s, V = c.layers, c.hidden, c.seq_len, c.padded_vocab()
    return 12 * L * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * L * h))


def eq7_model_flops(c: GPTConfig, B: int) -> float:
    L, h, s, V = c.layers, c.hidden, c.seq_len, c.padded_vocab()
    return 72 * B * L * s * h**2 * (1 + s / (6 * h) + V / (12 * h * L))


def eq3_full_recompute_flops(c: GPTConfig, B: int) -> float:
    L, h, s, V = c.layers, c.hidden, c.seq_len, c.padded_vocab()
    return 96 * B * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h))


def run_step(model, tokens, targets, recompute: bool = False):
    """Forward and backward over the blocks; returns the loss.

    With ``recompute``, every block that is ``recomputable`` keeps only its
    input and runs its forward again (tagged) right before its backward.
    """
    ctxs, x = [], tokens
    for block in model.blocks:
        y, ctx = block.forward(x)
        again = recompute and getattr(block, "recomputable", True)
        ctxs.append(("input", x) if again else ("ctx", ctx))
        x = y
    loss, lctx = model.loss.forward(x, targets)
    dy = model.loss.backward(lctx, 1.0)
    for block, (kind, saved) in zip(reversed(model.blocks), reversed(ctxs), strict=True):
        if kind == "input":
            with tagged("recompute"):
                _, saved = block.forward(saved)
        dy = block.backward(dy, saved)
    return loss


@pytest.mark.parametrize("config", [TINY, SMALL, GPT3])
def test_parameters_are_megatron_eq2_plus_the_final_layernorm(config):
    model = config.build(seed=0, numerics=False)
    assert model.num_parameters == pytest.approx(eq2_params(config) + 2 * config.hidden, rel=1e-12)
    L, h, s, V = config.layers, config.hidden, config.seq_len, config.padded_vocab()
    assert model.num_parameters == 12 * L * h * h + 13 * L * h + (V + s) * h + 2 * h


def test_the_head_uses_the_embedding_table_itself():
    model = TINY.build(seed=0, numerics=True)
    embedding, head = model.blocks[0], model.blocks[-1]
    assert head.logits.weight is embedding.weight
    assert len({id(p) for p in model.parameters()}) == len(model.parameters())
    assert not embedding.recomputable and not head.recomputable
    assert len(model.blocks) == TINY.num_blocks == TINY.layers + 2


def test_whole_model_gradients_with_dropout_and_tied_weights():
    model = TINY.build(seed=1, numerics=True)
    tokens, targets = TINY.batch(seed=1, step=0, global_batch=3, numerics=True)
    rng = np.random.default_rng(0)
    with batch(BatchInfo(seed=1, step=0, first_sample=0, size=3)):
        for p in model.parameters():
            p.zero_grad()
        run_step(model, tokens, targets)

        def loss() -> float:
            x = tokens
            for block in model.blocks:
                x, _ = block.forward(x)
            return float(model.loss.forward(x, targets)[0])

        for p in model.parameters():
            assert_close_at(loss, p.value, p.grad, rng, entries=4)


@pytest.mark.parametrize(("pp", "microbatches"), [(1, 1), (2, 4), (3, 2)])
def test_model_flops_are_korthikanti_eq7(pp, microbatches):
    B = 8
    plan = build_plan(
        preset("toy"),
        SMALL,
        TrainingConfig(numerics=False, global_batch=B, steps=1),
        Strategy("gpt", pp=pp, microbatches=microbatches),
    )
    step = Runtime(plan).run().steps[-1]
    assert step.model_flops == pytest.approx(eq7_model_flops(SMALL, B), rel=1e-9)
    assert step.hardware_flops == step.model_flops


@pytest.mark.parametrize("config", [SMALL, replace(GPT3, layers=2)])
def test_full_recomputation_flops_are_megatron_eq3(config):
    B = 2
    model = config.build(seed=0, numerics=False)
    tokens, targets = config.batch(0, 0, B, numerics=False)
    with recording() as tape:
        run_step(model, tokens, targets, recompute=True)
    model_flops = tape.flops() - tape.flops(tag="recompute")
    assert model_flops == pytest.approx(eq7_model_flops(config, B), rel=1e-9)
    assert tape.flops() == pytest.approx(eq3_full_recompute_flops(config, B), rel=1e-9)


def test_gpt3_175b_runs_a_layer_shape_only():
    model = GPT3.build(seed=0, numerics=False)
    s, b, h, a = GPT3.seq_len, 1, GPT3.hidden, GPT3.heads
    x = ShapeArray((b, s, h), "bf16")
    with recording() as tape:
        y, ctx = model.blocks[1].forward(x)
        dx = model.blocks[1].backward(y, ctx)
    assert dx == x
    assert tree_bytes(ctx) == s * b * h * 34 + 5 * a * s * s * b
    assert tape.flops() == 3 * (24 * b * s * h * h + 4 * b * s * s * h)
    assert model.num_parameters == pytest.approx(174.6e9, rel=1e-3)


def test_tiny_gpt_learns_the_shipped_text():
    config = GPTConfig(layers=2, hidden=32, heads=4, seq_len=16, vocab=64, data="text")
    plan = build_plan(
        preset("toy"),
        config,
        TrainingConfig(global_batch=16, steps=15, optimizer="adam", lr=1e-2),
        Strategy("single"),
    )
    losses = Runtime(plan).run().losses
    assert losses[0] == pytest.approx(np.log(64), abs=0.1)
    assert np.mean(losses[-5:]) < losses[0] - 0.8


def test_dropout_makes_no_difference_to_how_the_batch_is_split():
    config = GPTConfig(layers=2, hidden=16, heads=2, seq_len=8, vocab=32, dropout=0.2)
    training = TrainingConfig(global_batch=8, steps=2, optimizer="adam", lr=1e-2)
    losses = []
    for strategy in (Strategy("single"), Strategy("dp", dp=2, microbatches=2)):
        losses.append(Runtime(build_plan(preset("toy"), config, training, strategy)).run().losses)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)


def test_batches_are_token_ids_and_their_successors():
    tokens, targets = SMALL.batch(0, 0, 4, numerics=False)
    assert tokens == targets == ShapeArray((4, 16), "int64")
    config = GPTConfig(vocab=64, seq_len=8, data="text")
    tokens, targets = config.batch(0, 0, 4, numerics=True)
    assert tokens.dtype == np.int64 and tokens.shape == (4, 8)
    np.testing.assert_array_equal(tokens[:, 1:], targets[:, :-1])
    assert config.tokens(4) == 32


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden": 10, "heads": 4}, "divide"),
        ({"data": "text", "vocab": 20}, "distinct characters"),
        ({"data": "poems"}, "data must be"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_configs_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**fields)


def test_16_bit_numerics_are_refused():
    with pytest.raises(ValueError, match="shape-only"):
        SMALL.build(seed=0, numerics=True)
