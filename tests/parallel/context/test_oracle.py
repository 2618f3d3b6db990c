"""Context parallelism trains a tiny Llama and a tiny GPT exactly like one device.

Every algorithm (ring, all-gather, Ulysses) at cp = 2 and 4, and cp x tp x pp x
dp layouts on 16 devices, reach the single device's losses and weights
(float64, relative error 1e-9; docs/design.md, "The oracle"), with either
attention kernel, dropout, the unbalanced layout, sequence parallelism,
recomputation and every ZeRO stage.
"""

from dataclasses import replace

import pytest

from simulator import Strategy, preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.parallel.context import ALGORITHMS
from tests.conftest import assert_matches_single, run, single_device

#: grouped-query attention (4 query heads over 2 kv heads: Ulysses splits them at cp = 2
#: and repeats them at cp = 4), RoPE, SwiGLU, flash attention
LLAMA = LlamaConfig(layers=2, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=16, vocab=8)
#: learned positions, tied embeddings, the materialised kernel and dropout everywhere
GPT = GPTConfig(layers=2, hidden=16, heads=4, seq_len=16, vocab=8, dropout=0.1)
MODELS = {"llama": LLAMA, "gpt": GPT}
TRAINING = {"global_batch": 4, "steps": 2, "lr": 0.05}
CLUSTER = preset("toy", nodes=4)  # 16 devices


def check(model: str, strategy: Strategy) -> None:
    result = run(MODELS[model], strategy, CLUSTER, **TRAINING)
    assert_matches_single(result, single_device(MODELS[model], **TRAINING))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("cp", [2, 4])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_algorithm_trains_like_one_device(model, cp, algorithm):
    check(model, Strategy("cp", cp=cp, context_parallel=algorithm))


@pytest.mark.parametrize(
    ("model", "algorithm"), [("llama", "ring"), ("gpt", "allgather"), ("llama", "ulysses")]
)
def test_cp_tp_pp_dp_on_16_devices_trains_like_one_device(model, algorithm):
    strategy = Strategy(
        "16", dp=2, cp=2, tp=2, pp=2, microbatches=2, context_parallel=algorithm,
        sequence_parallel=True, zero=1,
    )  # fmt: skip
    assert strategy.num_devices == 16
    check(model, strategy)


LAYOUTS = [
    Strategy("unbalanced", cp=4, cp_balance=False),
    Strategy("unbalanced-allgather", cp=4, cp_balance=False, context_parallel="allgather"),
    Strategy("tp2-sp", cp=2, tp=2, sequence_parallel=True),
    Strategy("recompute-full", cp=2, pp=2, microbatches=2, recompute="full"),
    Strategy("selective-ring", cp=4, recompute="selective"),
    Strategy("selective-ulysses", cp=2, recompute="selective", context_parallel="ulysses"),
    Strategy("zero2-buckets", dp=2, cp=2, zero=2, bucket_mb=0.0005),
    Strategy("zero3", dp=2, cp=2, zero=3),
    Strategy("zb-h1", cp=2, pp=2, microbatches=4, schedule="zb-h1"),
    Strategy("interleaved", cp=2, pp=2, chunks=2, schedule="interleaved", microbatches=2),
]


@pytest.mark.parametrize("strategy", LAYOUTS, ids=lambda s: s.name)
def test_context_parallelism_composes_with_every_option(strategy):
    check("gpt", strategy)


def test_the_flash_kernel_with_dropout_and_the_materialised_llama_agree():
    for model in (replace(GPT, attention="flash"), replace(LLAMA, attention="materialised")):
        result = run(model, Strategy("ring", cp=4), CLUSTER, **TRAINING)
        assert_matches_single(result, single_device(model, **TRAINING))


def test_summed_gradients_add_the_replicas_means():
    """``grad_reduction = "sum"`` adds the dp replicas' gradients; a replica's is its
    context-parallel ranks' mean, so cp changes nothing."""
    sums = {"global_batch": 4, "steps": 2, "lr": 0.05}
    plain = run(GPT, Strategy("dp", dp=2, grad_reduction="sum"), CLUSTER, **sums)
    split = run(GPT, Strategy("dp-cp", dp=2, cp=2, grad_reduction="sum"), CLUSTER, **sums)
    assert_matches_single(split, plain)
