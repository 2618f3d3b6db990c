"""The planner searches context parallelism: cp and the algorithm, with run's checks, the
memory estimate divided by cp, a step bound that stays below the simulation."""

from dataclasses import replace

import pytest

from simulator import Strategy, TrainingConfig, preset, run_strategy
from simulator.nn.llama import LlamaConfig
from simulator.parallel.context import ALGORITHMS
from simulator.planner.bound import StepBound
from simulator.planner.prune import Pruner
from simulator.planner.space import SearchSpace, layout_keys, layout_name, layouts

LLAMA = LlamaConfig(layers=2, hidden=64, heads=4, kv_heads=2, ffn_hidden=96, seq_len=256,
                    vocab=64, dtype="bf16")  # fmt: skip
TRAINING = TrainingConfig(numerics=False, global_batch=2, steps=1, optimizer="adam")
CLUSTER = preset("toy", nodes=2)
SPACE = SearchSpace(max_chunks=2, zero=(0, 1), orders=("tp-cp-dp-pp",), recompute=("none",),
                    sequence_parallel=(False,), schedules=("1f1b",), max_cp=4)  # fmt: skip


def test_cp_is_searched_only_when_asked_with_every_algorithm():
    found = list(layouts(8, 2, SPACE))
    split = [s for s in found if s.cp > 1]
    assert {s.cp for s in split} == {2, 4}
    assert {s.context_parallel for s in split} == set(ALGORITHMS)
    assert all(s.dp * s.cp * s.tp * s.pp == 8 for s in found)
    # ZeRO partitions over dp x cp: with dp = 1 and cp > 1 it is tried too
    assert any(s.zero == 1 and s.dp == 1 and s.cp == 2 for s in found)
    assert not any(s.cp > 1 for s in layouts(8, 2, replace(SPACE, max_cp=1)))
    fixed = list(layouts(8, 2, replace(SPACE, fixed={"cp": 2, "context_parallel": "ring"})))
    assert fixed and {(s.cp, s.context_parallel) for s in fixed} == {(2, "ring")}


def test_a_layout_is_named_and_listed_with_its_cp():
    s = Strategy(dp=2, cp=4, tp=2, context_parallel="allgather", cp_balance=False)
    assert layout_name(s) == "dp2-tp2-pp1-cp4-allgather-unbalanced-m1"
    assert layout_keys(s)["cp"] == 4 and layout_keys(s)["context_parallel"] == "allgather"
    assert layout_keys(Strategy())["context_parallel"] is None


def test_run_s_checks_prune_and_the_estimate_divides_activations_by_cp():
    pruner = Pruner(CLUSTER, LLAMA, TRAINING)
    assert pruner._layer_bytes(Strategy(cp=4), 1) == pytest.approx(
        pruner._layer_bytes(Strategy(), 1) / 4
    )
    survivors = dict(pruner.survivors(layouts(8, 2, SPACE)))
    assert any(s.cp == 4 and s.tp == 1 and s.context_parallel == "ulysses" for s in survivors)
    # 4 query heads over tp = 2 leave 2 per rank: Ulysses cannot split them 4 ways
    assert not any(s.cp == 4 and s.tp == 2 and s.context_parallel == "ulysses" for s in survivors)
    assert any("ulysses" in rule for rule in pruner.pruned)


def test_the_step_bound_stays_below_the_simulated_context_parallel_step():
    pruner = Pruner(CLUSTER, LLAMA, TRAINING)
    bound = StepBound(pruner)
    for s in [
        Strategy(cp=4),
        Strategy(cp=2, tp=2, context_parallel="allgather"),
        Strategy(cp=4, pp=2, microbatches=2, context_parallel="ulysses"),
        Strategy(cp=4, cp_balance=False),
    ]:
        simulated = run_strategy(CLUSTER, LLAMA, TRAINING, replace(s, name="s"))
        assert 0.3 < bound.seconds(s) / simulated.metrics["iteration_time_s"] <= 1.0
