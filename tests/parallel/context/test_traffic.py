"""What every context-parallel rank sends, per layer and micro-batch, is the closed form.

With ``n = s/cp`` tokens per rank, ``b`` sequences, head size ``d``, ``e`` bytes
per element, ``a`` query and ``kv`` key-value heads per tensor-parallel rank:

* ring: ``cp - 1`` steps of keys and values forward, of keys, values and their
  gradients backward, ``b n kv d`` elements each: ``6 (cp - 1) b n kv d e``;
* all-gather: the keys and values gathered forward and again backward, and
  their gradients reduce-scattered, each ``(cp - 1)/cp`` of ``cp`` ranks' ``2 b n
  kv d``: the same total;
* Ulysses: all-to-alls of q, k, v and the output forward, of their gradients
  backward, each sending ``(cp - 1)/cp`` of the local tensor:
  ``(cp - 1)/cp b n d e (4 a + 4 kv)``; a key-value head repeated on ``cp / kv``
  ranks sends ``cp / kv`` times its share.
"""

import pytest

from simulator import Strategy
from simulator.nn.llama import LlamaConfig
from simulator.parallel.context import ALGORITHMS
from tests.conftest import ideal_cluster, run

E = 2  # bf16


def llama(kv_heads: int) -> LlamaConfig:
    return LlamaConfig(
        layers=3, hidden=128, heads=8, kv_heads=kv_heads, ffn_hidden=256, seq_len=64,
        vocab=64, dtype="bf16",
    )  # fmt: skip


def per_rank(algorithm: str, cp: int, tp: int, kv_heads: int, b: int) -> float:
    """The bytes one rank sends per layer per micro-batch (module docstring)."""
    config = llama(kv_heads)
    n, d = config.seq_len // cp, config.hidden // config.heads
    a, kv = config.heads // tp, max(kv_heads // tp, 1)
    if algorithm in ("ring", "allgather"):
        return 6 * (cp - 1) * b * n * kv * d * E
    each_kv = kv if cp <= kv else cp  # a repeated head goes to cp/kv ranks
    return (cp - 1) / cp * b * n * d * E * (4 * a + 4 * each_kv)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("cp", "tp", "kv_heads"), [(2, 2, 4), (4, 1, 2), (4, 2, 8)])
def test_context_parallel_traffic_is_the_closed_form(algorithm, cp, tp, kv_heads):
    config = llama(kv_heads)
    dp, microbatches, b = 2, 2, 2
    strategy = Strategy(
        "cp", dp=dp, cp=cp, tp=tp, microbatches=microbatches, context_parallel=algorithm
    )
    result = run(config, strategy, ideal_cluster(4, 8), global_batch=dp * microbatches * b,
                 steps=1, numerics=False)  # fmt: skip
    sent = result.run.steps[-1].comm_bytes["cp"]
    ranks = dp * cp * tp
    expected = per_rank(algorithm, cp, tp, kv_heads, b) * config.layers * microbatches * ranks
    assert sent == pytest.approx(expected, rel=1e-12)


def test_without_context_parallelism_nothing_is_counted_as_cp():
    result = run(llama(2), Strategy("dp", dp=2), ideal_cluster(), global_batch=4, steps=1,
                 numerics=False)  # fmt: skip
    assert "cp" not in result.metrics["comm_bytes"]
    assert result.metrics["cp"] == 1
