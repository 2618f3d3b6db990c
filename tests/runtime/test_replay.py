"""Replay: a wait for a blocking collective and the compute segment after it are one event.

Nothing a worker does between the end of its own group's collective and the
start of its next segment is seen by anyone else, so the runtime spends the two
as one event that fires when the segment would end (``simulator/runtime/replay.py``).
It must change no time: the same metrics and the same trace, row for row, as
spending them apart (what the runtime does when a device may fail).

Compute beside the worker's own asynchronous collectives runs slower on devices
that say so (``overlap_slowdown``, :func:`simulator.engine.cost.overlapped`).
"""

from __future__ import annotations

import pytest

import simulator.runtime.core as core
from simulator.experiment.runner import run_strategy
from simulator.hardware import ClusterSpec, preset
from simulator.nn.gpt import GPTConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from simulator.runtime.replay import Replay
from tests import slowed

MODEL = GPTConfig(layers=4, hidden=16, heads=2, seq_len=8, vocab=16, dropout=0.1, dtype="float32")
CLUSTER = preset("toy", nodes=2)


class Apart(Replay):
    """A replay that never joins a wait to the segment after it."""

    joins = property(lambda self: False, lambda self, value: None)


def outcome(strategy: Strategy, numerics: bool) -> tuple[dict, list]:
    training = TrainingConfig(numerics=numerics, global_batch=8, steps=2, optimizer="adam")
    result = run_strategy(CLUSTER, MODEL, training, strategy)
    metrics = {k: v for k, v in result.metrics.items() if k != "devices"}
    rows = sorted((e.device, e.lane, e.start, e.end, e.name) for e in result.trace.events)
    return metrics, rows


@pytest.mark.parametrize("numerics", [False, True])
@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("tp-sp", tp=2, sequence_parallel=True, dp=2),
        Strategy("hybrid", tp=2, pp=2, microbatches=4, schedule="interleaved", chunks=2),
        Strategy("zero3", tp=2, dp=2, zero=3, microbatches=2),
        Strategy(
            "overlap", tp=2, sequence_parallel=True, tp_comm_overlap=True, pp=2, microbatches=2
        ),
    ],
    ids=lambda s: s.name,
)
def test_joining_a_wait_to_its_next_segment_changes_no_time(
    strategy: Strategy, numerics: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined = outcome(strategy, numerics)
    monkeypatch.setattr(core, "Replay", Apart)
    apart = outcome(strategy, numerics)
    assert joined == apart
    assert any(lane == "comm" for _, lane, *_ in joined[1])  # there were waits to join


def compute_rows(strategy: Strategy, cluster: ClusterSpec) -> tuple[float, list, list]:
    training = TrainingConfig(numerics=False, global_batch=8, steps=1, optimizer="adam")
    result = run_strategy(cluster, MODEL, training, strategy)
    rows = [(e.device, e.start, e.end) for e in result.trace.events if e.lane == "compute"]
    comm = [(e.device, e.start, e.end) for e in result.trace.events if e.lane == "comm"]
    return result.metrics["iteration_time_s"], sorted(rows), comm


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("async-tp", tp=2),
        Strategy("overlap", tp=2, sequence_parallel=True, tp_comm_overlap=True),
    ],
    ids=lambda s: s.name,
)
def test_compute_beside_its_own_collectives_runs_at_the_stated_fraction_of_its_speed(
    strategy: Strategy,
) -> None:
    s = 0.5
    base_step, base, _ = compute_rows(strategy, CLUSTER)
    slow_step, slow, comm = compute_rows(strategy, slowed(CLUSTER, s))
    assert len(base) == len(slow)
    stretched = 0
    for (device, a0, b0), (same, a, b) in zip(base, slow, strict=True):
        alone, took = b0 - a0, b - a
        assert device == same
        assert alone * (1 - 1e-12) <= took <= alone * (1 + s) * (1 + 1e-12)
        if not any(d == device and start <= a < end for d, start, end in comm):
            assert took == pytest.approx(alone, rel=1e-12)  # nothing in flight beside it
        stretched += took == pytest.approx(alone * (1 + s), rel=1e-12)
    assert stretched > 0
    assert base_step <= slow_step <= base_step * (1 + s)


def test_compute_after_blocking_collectives_is_not_slowed() -> None:
    blocking = Strategy("blocking", tp=2, async_tp=False)
    assert compute_rows(blocking, CLUSTER) == compute_rows(blocking, slowed(CLUSTER, 0.5))
