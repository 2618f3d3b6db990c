"""The Llama model: its blocks, its gradients, and the two attention kernels' equal numbers."""

from dataclasses import replace

import numpy as np
import pytest

from simulator import GPTConfig, Strategy
from simulator.nn.context import BatchInfo, batch
from simulator.nn.embedding import OutputLogits
from simulator.nn.layers import SwiGLU
from simulator.nn.llama import LlamaConfig
from simulator.nn.norm import RMSNorm
from tests.conftest import run
from tests.gradcheck import assert_close_at
from tests.nn.test_gpt import run_step

TINY = LlamaConfig(layers=2, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=6, vocab=11)


def test_the_blocks_are_llamas():
    model = TINY.build(seed=0, numerics=True)
    embedding, layer, head = model.blocks[0], model.blocks[1], model.blocks[-1]
    assert embedding.positions is None  # rotary embeddings: no position table
    assert isinstance(layer.ln1, RMSNorm) and isinstance(layer.activation, SwiGLU)
    assert layer.core.kv_heads == 2 and layer.core.rotary == TINY.rope_theta
    assert layer.core.kernel == "flash"
    assert layer.qkv.bias is None and layer.fc1.weight.shape == (16, 2 * 12)
    # untied: the output layer owns a table of its own
    assert isinstance(head.logits, OutputLogits) and head.logits.weight is not embedding.weight
    assert head.logits.weight in model.parameters()
    tied = replace(TINY, tie_embeddings=True).build(seed=0, numerics=True)
    assert tied.blocks[-1].logits.weight is tied.blocks[0].weight
    assert tied.num_parameters == model.num_parameters - 128 * 16  # one padded table fewer


@pytest.mark.parametrize(
    "config",
    [TINY, replace(TINY, bias=True, dropout=0.1, attention="materialised", tie_embeddings=True)],
    ids=["llama", "bias-dropout-materialised-tied"],
)
def test_whole_model_gradients(config):
    model = config.build(seed=1, numerics=True)
    tokens, targets = config.batch(seed=1, step=0, global_batch=3, numerics=True)
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
            assert_close_at(loss, p.value, p.grad, rng, entries=3)


@pytest.mark.parametrize(
    "config",
    [
        LlamaConfig(layers=2, hidden=16, heads=4, kv_heads=2, ffn_hidden=24, seq_len=8, vocab=32),
        GPTConfig(layers=2, hidden=16, heads=4, seq_len=8, vocab=32, dropout=0.1),
    ],
    ids=["llama", "gpt-dropout"],
)
def test_flash_and_materialised_attention_train_alike(config):
    training = {"global_batch": 8, "steps": 3, "optimizer": "adam", "lr": 0.01}
    flash = run(replace(config, attention="flash"), Strategy("flash", tp=2), **training)
    mat = run(replace(config, attention="materialised"), Strategy("mat", tp=2), **training)
    np.testing.assert_allclose(flash.losses, mat.losses, rtol=1e-12, atol=0)
    assert flash.losses[-1] < flash.losses[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kv_heads": 3}, "kv_heads must divide heads"),
        ({"hidden": 12, "heads": 4}, "rotary embeddings rotate pairs"),
        ({"attention": "sdpa"}, "attention must be one of"),
        ({"ffn_hidden": 0}, "ffn_hidden must be an integer >= 1, got 0"),
    ],
)
def test_bad_shapes_are_one_clear_error(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)
