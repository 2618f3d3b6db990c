"""The planner searches expert parallelism with the checks ``run`` applies, and its bound
stays under the simulated step for mixtures of experts."""

from dataclasses import replace

import pytest

from simulator import Strategy, TrainingConfig, preset, run_strategy
from simulator.errors import LayoutError
from simulator.nn.llama import LlamaConfig
from simulator.parallel.build import check_layout
from simulator.planner.bound import StepBound
from simulator.planner.prune import Pruner
from simulator.planner.space import SearchSpace, layout_name, layouts

MOE = LlamaConfig(
    layers=2, hidden=32, heads=4, kv_heads=2, ffn_hidden=48, seq_len=16, vocab=64,
    experts=4, top_k=2, dtype="bf16",
)  # fmt: skip
TRAINING = TrainingConfig(numerics=False, global_batch=8, steps=1, optimizer="adam")
CLUSTER = preset("toy", nodes=2)
SPACE = SearchSpace(
    max_chunks=2, zero=(0, 1), orders=("tp-cp-ep-dp-pp",), microbatch_sizes=(1, 2),
    schedules=("1f1b", "dualpipev"), recompute=("none",), sequence_parallel=(False,),
)  # fmt: skip


def test_every_expert_parallel_size_that_fits_is_tried():
    eps = {(s.dp, s.ep) for s in layouts(8, 8, SPACE, experts=MOE.experts)}
    assert eps == {(1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 1), (8, 2), (8, 4)}
    assert {s.ep for s in layouts(8, 8, SPACE)} == {1}  # a dense model
    named = next(s for s in layouts(8, 8, SPACE, experts=4) if s.ep == 4)
    assert "ep4" in layout_name(named)


def test_no_layout_shares_out_experts_with_context_parallelism():
    space = replace(SPACE, max_cp=2)
    found = {(s.cp, s.ep) for s in layouts(8, 8, space, experts=MOE.experts)}
    assert (2, 1) in found and (1, 2) in found
    assert not any(cp > 1 and ep > 1 for cp, ep in found)
    fixed = replace(space, fixed={"ep": 2})
    assert {s.cp for s in layouts(8, 8, fixed, experts=MOE.experts)} == {1}


def test_the_pruner_refuses_what_run_refuses():
    pruner = Pruner(CLUSTER, MOE, TRAINING)
    fixed = replace(SPACE, ep=(3,))
    survivors = list(pruner.survivors(layouts(4, 8, fixed, experts=4)))
    assert not survivors
    (rule,) = pruner.pruned
    with pytest.raises(LayoutError, match="ep = 3 does not divide the 4 experts"):
        check_layout(CLUSTER, TRAINING, Strategy("x", dp=4, ep=3), MOE)
    assert rule.startswith("ep = N does not divide the N experts")


def test_the_bound_stays_under_the_simulated_step():
    for model in (MOE, replace(MOE, routing="zipf:1.5")):
        pruner = Pruner(CLUSTER, model, TRAINING)
        bound = StepBound(pruner)
        space = replace(SPACE, microbatch_sizes=(2,))
        survivors = list(pruner.survivors(layouts(4, 8, space, experts=4)))
        assert any(s.ep > 1 for s, _ in survivors) and any(s.pp > 1 for s, _ in survivors)
        for s, _ in survivors:
            simulated = run_strategy(CLUSTER, model, TRAINING, replace(s, name="s"))
            assert bound.seconds(s) <= simulated.metrics["iteration_time_s"]
