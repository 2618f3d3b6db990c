"""Pipelines reproduce single-device training; deadlocks are reported, never hung."""

import pytest

from simulator.errors import DeadlockError
from simulator.hardware import preset
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.pipeline.actions import Action, Schedule
from simulator.parallel.training import TrainingConfig
from simulator.runtime import Runtime
from tests.conftest import assert_matches_single, run, single_device

MODEL = MLPConfig(layers=12, width=16)


@pytest.fixture(scope="module")
def single():
    return single_device(MODEL, global_batch=24, steps=3)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("p", "m"), [(2, 1), (2, 4), (3, 2), (4, 8), (6, 3), (4, 12)])
def test_pipelines_reproduce_single_device_training(single, schedule, p, m):
    result = run(
        MODEL, Strategy(schedule, pp=p, microbatches=m, schedule=schedule), global_batch=24, steps=3
    )
    assert_matches_single(result, single)


def test_loss_falls_with_sgd():
    result = run(MLPConfig(4, 32), Strategy("single"), global_batch=64, steps=8, lr=0.05)
    assert result.losses[-1] < result.losses[0]


def test_deadlock_is_reported_with_what_each_worker_waits_for(monkeypatch):
    # rank 0 waits for the gradient of micro-batch 1 before sending micro-batch 1's
    # activation; rank 1 needs that activation first: a cycle. Bypass the validator
    # to exercise the runtime's own detection.
    bad = Schedule(
        "crossed",
        (
            (Action(0, "F", 0), Action(0, "BW", 1), Action(0, "F", 1), Action(0, "BW", 0)),
            (Action(1, "F", 0), Action(1, "F", 1), Action(1, "BW", 0), Action(1, "BW", 1)),
        ),
        2,
        2,
    )
    monkeypatch.setattr("simulator.parallel.build.validate", lambda *a, **k: None)
    monkeypatch.setattr("simulator.parallel.build.resolve_schedule", lambda s, d: bad)
    plan = build_plan(
        preset("toy"),
        MLPConfig(2, 8),
        TrainingConfig(global_batch=4, steps=1),
        Strategy("x", pp=2, microbatches=2),
    )
    with pytest.raises(DeadlockError, match="cannot make progress") as err:
        Runtime(plan).run()
    assert "worker 0" in str(err.value) and "waits for the gradient of stage 1" in str(err.value)


def test_programs_print_what_each_worker_does():
    plan = build_plan(
        preset("toy"),
        MLPConfig(4, 8),
        TrainingConfig(global_batch=4, steps=1),
        Strategy("x", pp=2, microbatches=2, schedule="1f1b"),
    )
    first, last = (w.listing().splitlines() for w in plan.workers)
    assert first[0] == "worker 0 (dp 0, pp 0, devices [0])"
    assert [line.split(maxsplit=1)[1] for line in first[1:]] == [
        "0F0",
        "send activation 0/0 -> w1",
        "0F1",
        "send activation 0/1 -> w1",
        "recv gradient 1/0 <- w1",
        "0BW0",
        "recv gradient 1/1 <- w1",
        "0BW1",
        "sync grads",
        "optimizer step",
    ]
    assert "recv activation 0/0 <- w0" in last[1]
