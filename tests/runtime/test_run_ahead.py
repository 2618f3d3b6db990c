"""Workers that run ahead of the engine's clock (``Runtime._process``) change no time:
every schedule of the abstract model with free messages gives the same metrics,
the same trace rows and the same memory samples as waiting for an event at every
action -- with fewer events."""

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.experiment.metrics import summarize
from simulator.hardware import preset
from simulator.nn.abstract import AbstractConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime
from simulator.runtime.record import RunRecord

# schedule, virtual stages per rank, and the micro-batch multiple it needs
_SCHEDULES = [
    ("gpipe", 1, 1),
    ("1f1b", 1, 1),
    ("interleaved", 2, 1),
    ("zb-h1", 1, 1),
    ("zb-h2", 1, 1),
    ("zbv", 2, 1),
    ("dualpipev", 2, 2),
]


def _rows(record: RunRecord) -> list[tuple[Any, ...]]:
    """Every trace row, by what it is rather than the order it was written in."""
    trace = record.trace
    tracks = [
        (trace.groups[g], trace.groups[peer] if peer >= 0 else (), trace.labels[label])
        for g, peer, label in trace.tracks
    ]  # ids are given in the order of first use, which differs
    return sorted(
        (tracks[t], s, e, mb)
        for t, s, e, mb in zip(trace.track, trace.start, trace.end, trace.mb, strict=True)
    )


def _memory(record: RunRecord) -> dict[int, list[tuple[float, int]]]:
    return {d: list(m.samples) for d, m in record.memory.items()}


def _both(model: AbstractConfig, strategy: Strategy, steps: int, barrier: bool):
    training = TrainingConfig(
        numerics=False, global_batch=strategy.microbatches, steps=steps, step_barrier=barrier
    )
    plan = build_plan(preset("toy", nodes=2), model, training, strategy)
    out = []
    for ahead in (True, False):
        runtime = Runtime(plan, ahead=ahead)
        out.append((summarize(plan, runtime.run()), runtime.result()))
    return out


@settings(max_examples=25, deadline=None)
@given(
    schedule=st.sampled_from(_SCHEDULES),
    p=st.integers(1, 4),
    rounds=st.integers(1, 4),
    times=st.lists(st.floats(0.25, 3.0), min_size=3, max_size=3),
    steps=st.integers(1, 2),
    barrier=st.booleans(),
)
def test_running_ahead_changes_no_time(schedule, p, rounds, times, steps, barrier) -> None:
    name, v, multiple = schedule
    m = p * multiple * rounds
    t_f, t_b, t_w = times
    model = AbstractConfig(
        stages=p * v, forward_ms=t_f, backward_ms=t_b, weight_ms=t_w, comm_ms=0.0,
        activation_bytes=1000,
    )  # fmt: skip
    strategy = Strategy(name, pp=p, microbatches=m, schedule=name, chunks=v)
    (ahead, record), (waiting, reference) = _both(model, strategy, steps, barrier)
    assert ahead == waiting  # every metric, to the last bit
    assert _rows(record) == _rows(reference)
    assert _memory(record) == _memory(reference)
    assert [s.end for s in record.steps] == [s.end for s in reference.steps]


def test_it_takes_fewer_events_and_none_with_timed_messages() -> None:
    """1F1B, 4 x 16: the run ahead takes at most half the events; with messages that
    take time (``comm_ms > 0``) no worker runs ahead."""
    strategy = Strategy("1f1b", pp=4, microbatches=16, schedule="1f1b")
    counts = {}
    for comm in (0.0, 0.5):
        model = AbstractConfig(stages=4, forward_ms=1.0, backward_ms=2.0, comm_ms=comm)
        training = TrainingConfig(numerics=False, global_batch=16, steps=1)
        plan = build_plan(preset("toy", nodes=2), model, training, strategy)
        for ahead in (True, False):
            runtime = Runtime(plan, ahead=ahead)
            env = runtime.engine.env
            runtime.run()
            counts[comm, ahead] = next(env._eid)  # events created, one id each
            times = np.asarray(runtime.result().trace.end)
            assert times.max() == runtime.result().end
    assert counts[0.0, True] <= counts[0.0, False] / 2
    assert counts[0.5, True] == counts[0.5, False]


@pytest.mark.parametrize("comm", [0.0, 0.5])
def test_progress_counts_every_instruction_once(comm) -> None:
    """The progress reports count instructions run, ahead or not, up to the estimate."""
    model = AbstractConfig(stages=4, forward_ms=1.0, backward_ms=2.0, comm_ms=comm)
    training = TrainingConfig(numerics=False, global_batch=512, steps=2)
    strategy = Strategy("1f1b", pp=4, microbatches=512, schedule="1f1b")
    runtime = Runtime(build_plan(preset("toy", nodes=2), model, training, strategy))
    seen: list[int] = []
    runtime.run(seen.append)
    assert seen == sorted(seen) and len(seen) >= 2  # every few thousand events, each end
    assert seen[-1] == runtime.estimated_events
