"""A tiny Llama (grouped-query attention with 2 kv heads, SwiGLU, RoPE, RMSNorm, untied
embeddings) trains exactly like one device under every strategy; FP8 changes time, not
numbers; grouped-query attention splits as Megatron-Core splits it."""

from dataclasses import replace

import numpy as np
import pytest

from simulator import Strategy, preset
from simulator.errors import LayoutError
from simulator.nn.llama import LlamaConfig
from simulator.nn.named import named_model
from simulator.parallel.tensor.grouped import qkv_columns
from tests.conftest import assert_matches_single, assert_run_fails, run

LLAMA = LlamaConfig(layers=4, hidden=16, heads=4, kv_heads=2, ffn_hidden=24, seq_len=8, vocab=32)
TRAINING = {"global_batch": 8, "steps": 2, "optimizer": "adam", "lr": 0.01}

LAYOUTS = [
    Strategy("dp2", dp=2),
    Strategy("tp2", tp=2),
    Strategy("tp4-kv-replicated", tp=4),
    Strategy("pp2", pp=2, microbatches=4),
    Strategy("sp", tp=2, sequence_parallel=True),
    Strategy("sp-tp4-pp2", tp=4, pp=2, microbatches=2, sequence_parallel=True),
    Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2),
    Strategy("recompute-full", tp=2, pp=2, microbatches=4, recompute="full"),
    Strategy("recompute-selective", tp=2, pp=2, microbatches=2, recompute="selective"),
    Strategy("zero1", dp=2, tp=2, zero=1, microbatches=2),
    Strategy("zero2-buckets", dp=2, zero=2, bucket_mb=0.001),
    Strategy("zero3", dp=4, zero=3, microbatches=2),
    Strategy("interleaved", dp=2, pp=2, chunks=2, schedule="interleaved", microbatches=2),
    Strategy("zb-h1", tp=2, pp=2, schedule="zb-h1", microbatches=4),
    Strategy("zb-h2", pp=4, schedule="zb-h2", microbatches=4),
    Strategy(
        "zbv-sp", tp=2, pp=2, chunks=2, schedule="zbv", microbatches=4, sequence_parallel=True
    ),
    Strategy("fp8-tp2-pp2", tp=2, pp=2, microbatches=2, precision="fp8", sequence_parallel=True),
]


@pytest.fixture(scope="module")
def single():
    return run(LLAMA, Strategy("single"), **TRAINING)


@pytest.mark.parametrize("strategy", LAYOUTS, ids=lambda s: s.name)
def test_every_strategy_trains_a_tiny_llama_like_one_device(single, strategy):
    assert_matches_single(run(LLAMA, strategy, **TRAINING), single)


def test_the_materialised_kernel_and_every_layout_agree_too(single):
    mat = replace(LLAMA, attention="materialised")
    result = run(mat, Strategy("tp4-pp2", tp=4, pp=2, microbatches=2), **TRAINING)
    np.testing.assert_allclose(result.losses, single.losses, rtol=1e-12, atol=0)


def test_replicated_kv_heads_sum_their_gradients_inside_each_group():
    """tp = 4 over 2 kv heads: ranks 0-1 hold kv head 0, ranks 2-3 kv head 1; after the
    step the replicas of each head are equal, and one all-reduce per layer and
    micro-batch adds the replicas' partial gradients inside each pair."""
    result = run(LLAMA, Strategy("tp4", tp=4), **TRAINING)
    worker = result.plan.worker(0, 0)
    qkv = worker.chunks[0].blocks[1].body.blocks[0].blocks[1]
    assert qkv.groups == [[0, 1], [2, 3]]
    k_and_v = [p.value[:, -2 * 4 :] for r in range(4) for p in qkv.params(r)]
    np.testing.assert_array_equal(k_and_v[0], k_and_v[1])
    np.testing.assert_array_equal(k_and_v[2], k_and_v[3])
    assert not np.array_equal(k_and_v[0], k_and_v[2])
    labels = {e.name for e in result.trace.events if "replicated kv" in e.name}
    assert labels == {f"all-reduce replicated kv grads (layer{i}.attn.qkv)" for i in range(4)}


def test_each_rank_takes_its_query_heads_and_the_kv_heads_they_read():
    core = LLAMA.build(0, numerics=False).blocks[1].core  # 4 heads over 2 groups, d = 4
    width = (2 + 2) * 4  # a group: 2 query heads, its key, its value
    split = qkv_columns(core, 2)  # tp divides kv: whole groups
    assert [list(c) for c in split] == [list(range(0, width)), list(range(width, 2 * width))]
    replicated = qkv_columns(core, 4)  # kv divides tp: each group on 2 ranks
    assert list(replicated[1]) == [*range(4, 8), *range(8, 16)]  # its query, the group's k, v
    assert list(replicated[2]) == [*range(16, 20), *range(24, 32)]


def test_kv_heads_that_neither_divide_nor_are_divided_by_tp_are_one_clear_error():
    config = LlamaConfig(layers=1, hidden=48, heads=6, kv_heads=3, ffn_hidden=8, seq_len=4, vocab=8)
    with pytest.raises(
        LayoutError,
        match=r"tp = 2 and kv_heads = 3: tp must divide kv_heads \(.*\) or kv_heads must divide tp",
    ):
        run(config, Strategy("tp2", tp=2), global_batch=2, steps=1)


def test_fp8_runs_the_linear_gemms_faster_and_keeps_less(single):
    h100 = preset("dgx-h100")
    # Llama 3 8B's layer: GEMMs large enough that FP8's peak outweighs its casts
    config = replace(named_model("llama3-8b").config, layers=1, seq_len=2048)
    shapes = {"numerics": False, "global_batch": 1, "steps": 1, "optimizer": "adam"}
    bf16 = run(config, Strategy("bf16", tp=2), h100, **shapes).metrics
    fp8 = run(config, Strategy("fp8", tp=2, precision="fp8"), h100, **shapes).metrics
    assert fp8["iteration_time_s"] < bf16["iteration_time_s"]
    # the same model FLOPs over the same BF16 peak: MFU rises as the step shortens
    assert fp8["model_flops_per_iteration"] == bf16["model_flops_per_iteration"]
    assert fp8["mfu"] / bf16["mfu"] == pytest.approx(
        bf16["iteration_time_s"] / fp8["iteration_time_s"]
    )
    assert fp8["peak_memory_bytes"] < bf16["peak_memory_bytes"]
    # numerics: the same float64 numbers
    numbers = run(LLAMA, Strategy("fp8", tp=2, precision="fp8"), **TRAINING)
    np.testing.assert_allclose(numbers.losses, single.losses, rtol=1e-12, atol=0)


BAD = """
[cluster]
preset = "dgx-a100"
[model]
name = "llama3-8b"
layers = 1
[training]
numerics = false
global_batch = 8
[[strategy]]
name = "x"
tp = 8
precision = "fp8"
"""


def test_fp8_on_a100s_is_one_clear_line(tmp_path, capsys):
    assert_run_fails(tmp_path, capsys, BAD, "needs FP8 tensor cores, and A100-SXM4-80GB has none")
