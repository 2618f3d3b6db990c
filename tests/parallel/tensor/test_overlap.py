"""Megatron-LM's asynchronous tensor-parallel collectives overlap the GEMMs that do not
need them; turning that off makes every collective block, and the numbers never change."""

import pytest

from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from tests.conftest import assert_matches_single

GPT = GPTConfig(layers=2, hidden=64, heads=4, seq_len=32, vocab=64, dtype="float64")


def _run(strategy: Strategy, numerics: bool = True):
    training = TrainingConfig(numerics=numerics, global_batch=4, steps=2)
    config = GPT if numerics else GPTConfig(**{**GPT.__dict__, "dtype": "bf16"})
    return run_strategy(preset("a100-node"), config, training, strategy)


@pytest.mark.parametrize("sp", [False, True])
def test_overlap_changes_the_time_and_never_the_numbers(sp: bool) -> None:
    single = _run(Strategy("single"))
    overlapped = _run(Strategy("a", tp=4, sequence_parallel=sp))
    blocking = _run(Strategy("b", tp=4, sequence_parallel=sp, async_tp=False))
    assert_matches_single(overlapped, single)
    assert_matches_single(blocking, single)
    a, b = overlapped.metrics, blocking.metrics
    assert a["comm_bytes"] == b["comm_bytes"]
    assert a["exposed_comm_s"] < b["exposed_comm_s"]
    assert a["iteration_time_s"] < b["iteration_time_s"]


def test_the_input_gradients_all_reduce_runs_during_the_weight_gradient_gemm() -> None:
    result = _run(Strategy("a", tp=4), numerics=False)
    events = [e for e in result.trace.events if e.device == 0]
    reduces = [e for e in events if e.name.startswith("f: all-reduce dx")]
    computes = [e for e in events if e.lane == "compute"]
    assert reduces
    for r in reduces:
        # some compute of the same device runs while the all-reduce is on the wire
        assert any(c.start < r.end and c.end > r.start for c in computes), r
