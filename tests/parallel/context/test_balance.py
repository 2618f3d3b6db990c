"""Causal attention's work per context-parallel rank: equal with the balanced chunks, about
twice the mean on the last rank without them.

Balanced (``cp_balance = true``, Megatron-Core's layout), rank ``r`` holds chunks
``r`` and ``2 cp - 1 - r`` of ``n`` tokens and computes ``2 n^2`` query-key pairs
at every step of the ring, ``2 cp n^2`` in all, whichever algorithm: the ranks
are equal (to within one chunk's diagonal, here exactly, the diagonal counted
as half a block as the FlashAttention papers count it). Unbalanced, rank ``r``
holds the ``r``-th ``m = s/cp`` tokens and computes ``(r + 1/2) m^2`` pairs: the
last rank ``(cp - 1/2) m^2``, ``(2 cp - 1)/cp`` times the mean ``cp m^2 / 2``.
"""

import pytest

from simulator import Strategy, build_plan
from simulator.nn.llama import LlamaConfig
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import recording
from simulator.parallel.context import ALGORITHMS
from simulator.parallel.training import TrainingConfig
from tests.conftest import ideal_cluster

CONFIG = LlamaConfig(
    layers=1, hidden=64, heads=8, kv_heads=8, ffn_hidden=64, seq_len=64, vocab=64, dtype="bf16"
)


def attention_flops(cp: int, algorithm: str, balanced: bool) -> list[float]:
    """Executed FLOPs of one layer's attention forward, per context-parallel rank."""
    strategy = Strategy("cp", cp=cp, context_parallel=algorithm, cp_balance=balanced)
    training = TrainingConfig(global_batch=1, steps=1, numerics=False)
    plan = build_plan(ideal_cluster(2, 8), CONFIG, training, strategy)
    attention = plan.workers[0].chunks[0].blocks[1].attention
    width = (CONFIG.heads + 2 * CONFIG.kv_heads) * (CONFIG.hidden // CONFIG.heads)
    xs = [ShapeArray((1, CONFIG.seq_len // cp, width), "bf16")] * cp
    with recording() as tape:
        attention.forward(xs)
    return [tape.flops(rank) for rank in range(cp)]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("cp", [2, 4, 8])
def test_balanced_chunks_give_every_rank_the_same_causal_work(cp, algorithm):
    flops = attention_flops(cp, algorithm, balanced=True)
    n = CONFIG.seq_len // (2 * cp)
    diagonal = 4 * CONFIG.hidden * n * n / 2  # one chunk's diagonal block, all heads
    assert max(flops) - min(flops) <= diagonal
    assert max(flops) == min(flops)
    m = CONFIG.seq_len
    assert sum(flops) == pytest.approx(4 * CONFIG.hidden * m * m / 2)  # the causal half


@pytest.mark.parametrize("algorithm", ["ring", "allgather"])
@pytest.mark.parametrize("cp", [4, 8])
def test_without_balance_the_last_rank_does_about_twice_the_mean(cp, algorithm):
    flops = attention_flops(cp, algorithm, balanced=False)
    mean = sum(flops) / cp
    assert flops == sorted(flops)  # later ranks see more keys
    assert flops[-1] / mean == pytest.approx((2 * cp - 1) / cp)
    assert flops[-1] / mean > 1.7
