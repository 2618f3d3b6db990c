"""Activation memory per rank falls with cp; the weights do not divide.

Every context-parallel rank keeps its layers' activations for its ``s/cp``
tokens (:func:`simulator.nn.accounting.layer_stash_bytes`): at ``cp = c`` the
peak activation bytes of a rank are ``1/c`` of ``cp = 1``'s (attention, MLP,
embedding and logits alike): ring and all-gather keep exactly what one device
keeps for those tokens. Ulysses keeps, per layer, its heads' output besides the
one the output projection keeps (TransformerEngine's all-to-all attention saves
it), ``e b n a d`` bytes for ``n = s/cp`` tokens and ``a`` query heads of size
``d``, and a key-value head repeated over ``cp / kv`` ranks keeps its keys and
values for the whole sequence, ``2 e b n d (cp - kv)`` more.
"""

import pytest

from simulator import Strategy
from simulator.nn.accounting import layer_stash_bytes
from simulator.nn.llama import LlamaConfig
from tests.conftest import ideal_cluster, run

# Llama 3's proportions: 4 query heads per key-value head, f = 3.5 h
CONFIG = LlamaConfig(
    layers=4, hidden=512, heads=8, kv_heads=2, ffn_hidden=1792, seq_len=1024, vocab=256,
    dtype="bf16",
)  # fmt: skip


def memory(strategy: Strategy) -> dict[str, int]:
    result = run(CONFIG, strategy, ideal_cluster(2, 8), global_batch=2, steps=1, numerics=False)
    return result.memory(0)


@pytest.fixture(scope="module")
def one_device() -> dict[str, int]:
    return memory(Strategy("tp2", tp=2))


@pytest.mark.parametrize("algorithm", ["ring", "allgather"])
@pytest.mark.parametrize("cp", [2, 4])
def test_activations_per_rank_divide_by_cp(one_device, cp, algorithm):
    split = memory(Strategy("cp", cp=cp, tp=2, context_parallel=algorithm))
    ratio = split["activations_peak"] / (one_device["activations_peak"] / cp)
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert ratio == pytest.approx(1.0, abs=1e-3)  # the same tensors, for s/cp tokens
    for state in ("parameters", "gradients", "optimizer"):
        assert split[state] == one_device[state]  # replicated over dp x cp


@pytest.mark.parametrize("cp", [2, 4])
def test_ulysses_keeps_its_heads_output_and_repeated_keys_too(one_device, cp):
    split = memory(Strategy("cp", cp=cp, tp=2, context_parallel="ulysses"))
    e, b, n = 2, 2, CONFIG.seq_len // cp
    d = CONFIG.hidden // CONFIG.heads
    heads, kv = CONFIG.heads // 2, CONFIG.kv_heads // 2  # per tensor-parallel rank
    extra = e * b * n * heads * d + 2 * e * b * n * d * max(cp - kv, 0)
    expected = one_device["activations_peak"] / cp + CONFIG.layers * extra
    assert split["activations_peak"] == pytest.approx(expected, rel=1e-3)


def test_the_planner_estimate_divides_by_cp_too():
    whole = layer_stash_bytes(CONFIG, 2, tp=2)
    for cp in (2, 4, 8):
        assert layer_stash_bytes(CONFIG, 2, tp=2, cp=cp) == pytest.approx(whole / cp)
