"""A failure is never "ok": a run under failures either never met one, and equals the
fault-free run, or reports ``failed`` with no loss for the step it did not finish."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.hardware.faults import Fail
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig

CLUSTER = preset("toy", nodes=2)
MODEL = MLPConfig(layers=4, width=8)
TRAINING = TrainingConfig(global_batch=8, steps=2)
#: (dp, tp, pp) on the 8 devices
LAYOUTS = [(1, 1, 1), (2, 1, 1), (4, 1, 1), (1, 2, 1), (1, 1, 2), (2, 1, 4), (2, 2, 2), (1, 4, 2)]
_CLEAN: dict = {}


def layout(dp: int, tp: int, pp: int) -> Strategy:
    return Strategy(f"dp{dp}-tp{tp}-pp{pp}", dp=dp, tp=tp, pp=pp, microbatches=2 if pp > 1 else 1)


def clean(strategy: Strategy):
    if strategy.name not in _CLEAN:
        _CLEAN[strategy.name] = run_strategy(CLUSTER, MODEL, TRAINING, strategy)
    return _CLEAN[strategy.name]


def run(strategy: Strategy, faults: list[Fail]):
    return run_strategy(CLUSTER, MODEL, TRAINING, strategy, faults=faults)


def test_every_device_of_the_strategy_failing_is_failed() -> None:
    # all of dp2's devices fail: no one is left waiting, and still the run failed
    for dp, devices in ((2, [0, 1]), (4, [0, 1, 2, 3])):
        faults = [Fail(device=d, at_ms=0.0) for d in devices]
        result = run(layout(dp, 1, 1), faults)
        assert result.status == "failed", result.metrics["message"]
        assert result.losses == [None]
        assert f"device {devices[0]} failed at 0.000 ms, in step 0" in result.metrics["message"]


def test_a_failure_in_the_second_step_keeps_the_first_steps_loss_only() -> None:
    strategy = layout(2, 1, 4)
    first = clean(strategy).run.steps[0]
    # just after the second step starts, on every device the strategy uses
    faults = [Fail(device=d, at_ms=first.end * 1e3 * 1.0001) for d in range(8)]
    result = run(strategy, faults)
    assert result.status == "failed"
    assert result.losses == [clean(strategy).losses[0], None]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.sampled_from(LAYOUTS),
    st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 1e3])),
        min_size=1,
        max_size=8,
        unique_by=lambda f: f[0],
    ),
)
def test_random_failures_are_fault_free_and_equal_or_failed(sizes, failures) -> None:
    strategy = layout(*sizes)
    reference = clean(strategy)
    result = run(strategy, [Fail(device=d, at_ms=ms) for d, ms in failures])
    ends = [r.end for r in reference.run.steps]
    used = set(range(strategy.num_devices))
    before_the_end = [d for d, ms in failures if d in used and ms / 1e3 <= ends[-1]]
    if result.status == "ok":
        # no failure of a device it uses came in time to matter: the fault-free run
        assert not before_the_end
        assert result.losses == reference.losses
        assert result.metrics["iteration_time_s"] == reference.metrics["iteration_time_s"]
        assert all(math.isfinite(x) for x in result.losses)
    else:
        assert result.status == "failed", result.metrics["message"]
        assert before_the_end
        # the steps before the failure are the fault-free ones; the failed one has no loss
        *finished, last = result.losses
        assert last is None
        assert finished == reference.losses[: len(finished)]
