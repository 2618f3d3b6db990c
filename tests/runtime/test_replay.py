"""Replay: a wait for a blocking collective and the compute segment after it are one event.

Nothing a worker does between the end of its own group's collective and the
start of its next segment is seen by anyone else, so the runtime spends the two
as one event that fires when the segment would end (``simulator/runtime/replay.py``).
It must change no time: the same metrics and the same trace, row for row, as
spending them apart (what the runtime does when a device may fail).
"""

from __future__ import annotations

import pytest

import simulator.runtime.core as core
from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from simulator.runtime.replay import Replay

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
