"""A cp x tp worker records its context-parallel ranks' code side by side, as one lockstep group."""

import numpy as np

from simulator import Strategy, ops
from simulator.nn.llama import LlamaConfig
from simulator.ops.tape import CollectiveCall, ComputeSegment, Wait, new_handle, recording
from simulator.parallel.context import lockstep
from simulator.parallel.tensor.collectives import collective, per_rank, wait
from tests.conftest import ideal_cluster, run


def test_copies_join_segment_by_segment_and_collective_by_collective():
    def work(scale: float) -> list:
        xs = per_rank(2, lambda r: ops.scale(np.ones(4), scale + r))
        handle = new_handle()
        ys = collective("all_reduce", xs, "sum", handle)
        per_rank(2, lambda r: ops.scale(xs[r], 2.0))
        wait(handle)
        return ys

    with recording() as tape:
        outs = lockstep.side_by_side([lambda: work(1.0), lambda: work(10.0)], width=2)
    np.testing.assert_allclose(outs[0][0], np.full(4, 3.0))  # copy 0: ranks 0 and 1 summed
    np.testing.assert_allclose(outs[1][1], np.full(4, 21.0))  # copy 1: its own pair
    segment, call, second, done = tape.items
    assert isinstance(segment, ComputeSegment) and sorted(segment.kernels) == [0, 1, 2, 3]
    assert isinstance(call, CollectiveCall) and call.plan.group_size == 4
    senders = {t.src for t in call.plan.transfers}
    pairs = {(t.src, t.dst) for t in call.plan.transfers}
    assert senders == {0, 1, 2, 3} and pairs <= {(0, 1), (1, 0), (2, 3), (3, 2)}
    assert isinstance(second, ComputeSegment) and isinstance(done, Wait)
    assert done.handle == call.handle >= 0


LLAMA = LlamaConfig(layers=2, hidden=64, heads=8, kv_heads=2, ffn_hidden=96, seq_len=64, vocab=64,
                    dtype="bf16")  # fmt: skip


def test_shape_only_runs_one_copy_for_all_and_gets_the_same_numbers(monkeypatch):
    """The shortcut (one context-parallel copy, one tensor-parallel rank's attention,
    standing for the rest) changes no number of the results."""
    strategies = [
        Strategy("ring", dp=2, cp=2, tp=2, microbatches=2, sequence_parallel=True),
        Strategy("ulysses", cp=4, tp=2, context_parallel="ulysses", pp=2, microbatches=2),
    ]
    cluster = ideal_cluster(2, 8)

    def results() -> list[dict]:
        out = []
        for s in strategies:
            metrics = run(LLAMA, s, cluster, global_batch=4, steps=1, numerics=False).metrics
            out.append(
                {k: v for k, v in metrics.items() if k != "devices"}
                | {"devices": [{k: v for k, v in d.items()} for d in metrics["devices"]]}
            )
        return out

    fast = results()
    monkeypatch.setattr(lockstep, "alike", lambda maps: False)
    from simulator.parallel.context import attention

    monkeypatch.setattr(attention, "alike", lambda maps: False)
    assert results() == fast
