"""The tape: lockstep segments across tensor-parallel ranks, whatever their tags."""

import pytest

from simulator import ops
from simulator.experiment.runner import run_strategy
from simulator.nn.gpt import GPTConfig
from simulator.ops.arrays import ShapeArray
from simulator.ops.tape import ComputeSegment, on_rank, recording, tagged
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from tests.conftest import ideal_cluster


def test_ranks_line_up_by_position_not_by_the_order_of_the_loop():
    # rank by rank: a recomputed part, then the rest (what selective recomputation does)
    x = ShapeArray((64, 64), "float32")
    with recording() as tape:
        for r in range(4):
            with on_rank(r):
                with tagged("recompute"):
                    ops.matmul(x, x)
                ops.matmul(x, x)
                ops.matmul(x, x)
    segments = [s for s in tape.items if isinstance(s, ComputeSegment)]
    assert [s.tag for s in segments] == ["recompute", ""]
    assert [sorted(s.kernels) for s in segments] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert [len(s.kernels[3]) for s in segments] == [1, 2]


@pytest.mark.parametrize("t", [1, 2, 4, 8])
def test_selective_recomputation_costs_what_its_flops_say_at_every_t(t):
    # on an ideal device a kernel takes FLOPs / peak: the recomputed attention cores of
    # one device take (hardware - model FLOPs) / t / peak, the ranks in lockstep
    gpt = GPTConfig(layers=2, hidden=64, heads=8, seq_len=32, vocab=64, dtype="bf16")
    cluster = ideal_cluster(devices_per_node=8)
    result = run_strategy(
        cluster,
        gpt,
        TrainingConfig(numerics=False, global_batch=4, steps=1),
        Strategy("s", tp=t, recompute="selective"),
    )
    m = result.metrics
    recomputed = m["hardware_flops_per_iteration"] - m["model_flops_per_iteration"]
    assert recomputed > 0
    seconds = sum(e.duration for e in result.trace.events if e.device == 0 and e.cat == "recompute")
    expected = recomputed / t / cluster.device.peak("bf16")
    assert seconds == pytest.approx(expected, rel=1e-9)
