"""What a run hands back: a record that nothing can change, and everything the metrics
and pictures read."""

import dataclasses

import numpy as np
import pytest

from simulator.experiment.metrics import summarize
from simulator.hardware import preset
from simulator.hardware.faults import Straggler
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.training import TrainingConfig
from simulator.runtime import RunRecord, Runtime


@pytest.fixture(scope="module")
def finished():
    plan = build_plan(
        preset("toy", nodes=2),
        MLPConfig(4, 16),
        TrainingConfig(global_batch=8, steps=2),
        Strategy("hybrid", dp=2, pp=2, microbatches=2),
    )
    runtime = Runtime(plan, faults=[Straggler(device=1, factor=2.0)])
    return plan, runtime, runtime.run()


def test_the_record_is_frozen(finished):
    _, runtime, run = finished
    assert isinstance(run, RunRecord) and runtime.result() is run
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.end = 0.0  # type: ignore[misc]
    assert isinstance(run.steps, tuple) and len(run.steps) == 2
    with pytest.raises(TypeError):
        run.memory[0] = run.memory[1]  # type: ignore[index]
    with pytest.raises(TypeError):
        run.steps[-1].comm_bytes["pp"] = 0  # type: ignore[index]
    worker = run.steps[-1].workers[0]
    with pytest.raises(ValueError, match="read-only"):
        worker.exposed[:] = 0.0
    assert run.trace.sealed


def test_it_holds_what_the_metrics_and_pictures_need(finished):
    plan, _, run = finished
    assert run.losses == [s.loss for s in run.steps] and all(run.losses)
    assert dict(run.stragglers) == {1: Straggler(device=1, factor=2.0)}
    assert not run.failed and run.fold.replicas == 1  # a fault: never folded
    assert set(run.memory) == {d for w in plan.workers for d in w.devices}
    assert run.end == run.steps[-1].end
    metrics = summarize(plan, run)
    for d in metrics["devices"]:
        assert d["peak_memory_bytes"] == run.memory[d["device"]].peak


def test_exposed_seconds_are_the_recorded_stretches(finished):
    _, _, run = finished
    for step in run.steps:
        for worker in step.workers:
            lengths = worker.exposed[:, 1] - worker.exposed[:, 0]
            assert np.all(lengths > 0)
            assert lengths.sum() == pytest.approx(worker.exposed_s, rel=1e-12, abs=1e-300)
            assert np.all(worker.exposed >= step.start) and np.all(worker.exposed <= step.end)
    assert any(len(w.exposed) for s in run.steps for w in s.workers)  # the gradient all-reduce
