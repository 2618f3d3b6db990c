"""The closed forms of :mod:`simulator.nn.accounting` are what the layers do, exactly.

Parameters against the built models, model and hardware FLOPs against the
runtime's tally, and one layer's stash against the shape-only contexts a
pipeline chunk keeps, over tensor and sequence parallelism, recomputation,
both attention kernels and both precisions.
"""

from dataclasses import replace

import pytest

from simulator import GPTConfig, Strategy, TrainingConfig, build_plan, preset
from simulator.comm.layout import placed
from simulator.nn import accounting
from simulator.nn.context import BatchInfo, batch
from simulator.nn.llama import LlamaConfig
from simulator.nn.named import named_model
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording
from simulator.parallel.build import parallelize
from simulator.parallel.stage import Chunk
from simulator.runtime import Runtime

LLAMA = LlamaConfig(
    layers=3, hidden=256, heads=8, kv_heads=2, ffn_hidden=672, seq_len=64, vocab=500, dtype="bf16"
)
GPT = GPTConfig(layers=3, hidden=256, heads=8, seq_len=64, vocab=500, dropout=0.1, dtype="bf16")


@pytest.mark.parametrize(
    "config",
    [
        LLAMA,
        replace(LLAMA, tie_embeddings=True, bias=True, kv_heads=8),
        GPT,
        replace(GPT, ffn_mult=2),
        named_model("llama3-405b").config,
    ],
    ids=["llama", "llama-tied-bias-mha", "gpt", "gpt-ffn2", "llama3-405b"],
)
def test_parameters_are_the_formula(config):
    assert config.build(0, numerics=False).num_parameters == accounting.parameters(config)


def step_flops(config, strategy, global_batch=4):
    plan = build_plan(
        preset("toy"),
        config,
        TrainingConfig(numerics=False, global_batch=global_batch, steps=1),
        strategy,
    )
    rt = Runtime(plan)
    rt.run()
    return rt.records[-1].model_flops, rt.records[-1].hardware_flops


@pytest.mark.parametrize("attention", ["flash", "materialised"])
@pytest.mark.parametrize("config", [LLAMA, GPT], ids=["llama", "gpt"])
def test_model_flops_per_token_are_6_n_gemm_plus_12_l_s_h(config, attention):
    config = replace(config, attention=attention)
    model, hardware = step_flops(config, Strategy("s", pp=2, microbatches=2))
    assert model == pytest.approx(4 * config.seq_len * accounting.model_flops_per_token(config))
    # the flash kernel executes half the causal scores forward and 2.5 forwards backward:
    # 2 + 5 of the formula's 4 + 8 s^2 h per sequence and layer
    L, s, h = config.layers, config.seq_len, config.hidden
    saved = 4 * L * 5 * s * s * h if attention == "flash" else 0
    assert hardware == pytest.approx(model - saved, rel=1e-12)


def test_replicated_kv_heads_are_counted_once_in_the_model_flops():
    # tp = 4 over 2 kv heads: every kv head on 2 ranks, its GEMMs done twice
    model, hardware = step_flops(LLAMA, Strategy("tp4", tp=4))
    assert model == pytest.approx(4 * LLAMA.seq_len * accounting.model_flops_per_token(LLAMA))
    L, s, h, d = LLAMA.layers, LLAMA.seq_len, LLAMA.hidden, LLAMA.hidden // LLAMA.heads
    # each of the 2 kv heads on 2 ranks: one extra copy of its k and v columns (2 d each),
    # in 3 GEMMs (forward, dx, dW) of 2 s h FLOPs per column and sequence
    repeated = 4 * L * 3 * 2 * s * h * (2 * 2 * d)
    assert hardware == pytest.approx(model - 4 * L * 5 * s * s * h + repeated, rel=1e-12)


def test_full_recomputation_adds_one_forward_of_every_layer():
    model, hardware = step_flops(LLAMA, Strategy("s", recompute="full"), global_batch=2)
    L, s, h = LLAMA.layers, LLAMA.seq_len, LLAMA.hidden
    forward = accounting.layer_forward_flops(LLAMA, 2) - 2 * 2 * s * s * h  # flash: causal half
    assert hardware == pytest.approx(model - 2 * L * 5 * s * s * h + L * forward, rel=1e-12)


def layer_stash(config, b, tp=1, sp=False, recompute="none", precision="bf16"):
    """Bytes rank 0 keeps for one layer, as a pipeline chunk runs it (shape-only)."""
    layer = config.build(0, numerics=False).blocks[1]
    s = Strategy("s", tp=tp, sequence_parallel=sp, recompute=recompute, precision=precision)
    chunk = Chunk(0, [parallelize(layer, s)], None, recompute, precision)
    local = config.seq_len // (tp if sp else 1)
    xs = [ShapeArray((b, local, config.hidden), config.dtype)] * tp
    with batch(BatchInfo(0, 0, 0, b)), placed(None), recording():
        _, ctx = chunk.forward(xs)
    return chunk.stash_bytes(ctx, 0)


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize(("tp", "sp"), [(1, False), (2, False), (2, True), (4, True), (8, True)])
@pytest.mark.parametrize(
    "config",
    [
        LLAMA,
        replace(LLAMA, attention="materialised", dropout=0.1),
        GPT,
        replace(GPT, attention="flash"),
    ],
    ids=["llama-flash", "llama-materialised-dropout", "gpt", "gpt-flash"],
)
def test_a_layer_keeps_what_the_formula_says(config, tp, sp, recompute, precision):
    expected = accounting.layer_stash_bytes(config, 2, tp, sp, recompute, precision)
    assert layer_stash(config, 2, tp, sp, recompute, precision) == expected


def test_the_formula_is_korthikanti_table_2_for_gpt():
    c, b = GPT, 2
    s, h, a = c.seq_len, c.hidden, c.heads
    assert accounting.layer_stash_bytes(c, b) == s * b * h * (34 + 5 * a * s / h)
    flash = accounting.layer_stash_bytes(replace(c, attention="flash"), b)
    assert flash == s * b * h * 34 + 4 * a * s * b  # no s^2 term; the FP32 softmax statistics


def test_llama_flash_layer_is_sbh_12_plus_4k_plus_6_sbf_plus_4_asb():
    c, b = LLAMA, 2
    s, h, a, f, k = c.seq_len, c.hidden, c.heads, c.ffn_hidden, c.kv_heads / c.heads
    assert layer_stash(c, b) == s * b * h * (12 + 4 * k) + 6 * s * b * f + 4 * a * s * b


@pytest.mark.parametrize("attention", ["flash", "materialised"])
def test_flash_keeps_the_bytes_per_token_when_the_sequence_doubles(attention):
    """At a fixed number of tokens per micro-batch (s b), doubling s leaves the flash
    kernel's activation bytes per token unchanged; the materialised kernel's grow."""
    short = replace(LLAMA, attention=attention)
    long = replace(short, seq_len=2 * short.seq_len)
    per_token_short = layer_stash(short, 4) / (short.seq_len * 4)
    per_token_long = layer_stash(long, 2) / (long.seq_len * 2)
    if attention == "flash":
        assert per_token_long == per_token_short
    else:
        a, s = short.heads, short.seq_len
        assert per_token_long - per_token_short == 2 * a * s  # 2 a s^2 b bytes / (s b)


def test_selective_recomputation_leaves_nothing_to_recompute_with_flash():
    for config in (LLAMA, replace(GPT, attention="flash")):
        assert layer_stash(config, 2, recompute="selective") == layer_stash(config, 2)
        none = step_flops(config, Strategy("none"), global_batch=2)
        selective = step_flops(config, Strategy("selective", recompute="selective"), 2)
        assert selective == none  # the same model and hardware FLOPs: no rerun
    mat = replace(LLAMA, attention="materialised")
    assert layer_stash(mat, 2, recompute="selective") < layer_stash(mat, 2)


@pytest.mark.parametrize("name", ["llama3-8b", "llama3-70b", "llama3-405b"])
def test_llama3_flops_per_token_and_the_6nd_ratio(name):
    c = named_model(name).config
    n_gemm = accounting.gemm_parameters(c)
    L, s, h, V = c.layers, c.seq_len, c.hidden, c.padded_vocab()
    assert n_gemm == accounting.parameters(c) - V * h - (2 * L + 1) * h  # no input table, norms
    per_token = accounting.model_flops_per_token(c)
    assert per_token == 6 * n_gemm + 12 * L * s * h
    assert accounting.six_nd_ratio(c) == per_token / (6 * accounting.parameters(c))
