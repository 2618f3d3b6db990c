"""Run strategies and scenarios.

``run_strategy`` plans and simulates one strategy; ``run_scenario`` checks
every strategy of a scenario first (so a bad layout stops everything before
any time is spent), then runs them one by one. A strategy that runs out of
memory is reported with status ``"oom"``, one whose loss becomes NaN or
infinite with ``"diverged"``, and the others still run. The files a run
leaves are written by :mod:`simulator.viz.outputs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.memory import CATEGORIES, breakdown_of
from ..engine.trace import Trace
from ..errors import DeviceFailedError, DivergedError, OutOfMemoryError
from ..hardware import ClusterSpec
from ..hardware.faults import Fault
from ..keys import check_argument
from ..parallel.build import Plan, build_plan, gather_params
from ..parallel.pipeline import Schedule
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from ..runtime import RunRecord, Runtime, collector_paused
from ..scenario.limits import Limits
from ..scenario.parse import Scenario
from ..scenario.schedule_file import read_schedule_file
from .arguments import FLAG, check_run, scenario_of
from .metrics import summarize
from .progress import ProgressBar


@dataclass
class StrategyResult:
    """One simulated strategy: its plan, the record of its run (frozen: what the
    pictures read) and its metrics (the results-JSON entry)."""

    plan: Plan
    run: RunRecord
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.plan.strategy.name

    @property
    def status(self) -> str:
        return self.metrics["status"]

    @property
    def losses(self) -> list[float | None]:
        return self.metrics["loss"]

    @property
    def trace(self) -> Trace:
        return self.run.trace

    @property
    def step_window(self) -> tuple[float, float]:
        """The last step's start and end, simulated seconds."""
        record = self.run.steps[-1]
        return record.start, record.end

    def memory(self, device: int) -> dict[str, int]:
        """Bytes by category on ``device`` at their peaks (see :mod:`simulator.engine.memory`);
        all zero for a device the strategy does not use."""
        ledger = self.run.memory.get(device)
        if ledger is None:
            return breakdown_of((0,) * len(CATEGORIES), 0)
        return ledger.breakdown()

    def parameters(self, dp_rank: int = 0) -> dict[str, Any]:
        """Final weights of one replica, named as in the single-device model."""
        return gather_params(self.plan, dp_rank)


@dataclass
class ScenarioResult:
    name: str
    results: list[StrategyResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The results JSON; numbers that are not finite become None (strict JSON)."""
        return _finite({"scenario": self.name, "results": [r.metrics for r in self.results]})

    def __getitem__(self, name: str) -> StrategyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)


def _finite(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def execute(
    plan: Plan,
    progress: bool = False,
    limits: Limits | None = None,
    faults: Iterable[Fault] = (),
) -> StrategyResult:
    """Simulate a plan; out-of-memory becomes ``status = "oom"``, a loss that is not
    finite ``"diverged"`` and a failed device (one of ``faults``) ``"failed"``, each
    with its message. ``progress`` shows a bar (module :mod:`simulator.experiment.progress`); a
    run estimated past ``limits.max_events`` is refused before it starts."""
    runtime = Runtime(plan, faults=faults)
    (limits or Limits()).check(
        "max_events",
        runtime.estimated_events,
        f"strategy {plan.strategy.name!r}: the estimated events of the run",
    )
    status, message = "ok", ""
    try:
        with ProgressBar(plan.strategy.name, runtime.estimated_events, progress) as bar:
            runtime.run(bar.update if bar.active else None)
    except OutOfMemoryError as err:
        status, message = "oom", str(err)
    except DivergedError as err:
        status, message = "diverged", str(err)
    except DeviceFailedError as err:
        status, message = "failed", str(err)
    run = runtime.result()
    metrics = summarize(plan, run)
    metrics["status"], metrics["message"] = status, message
    return StrategyResult(plan, run, metrics)


def run_strategy(
    cluster: ClusterSpec,
    model: Any,
    training: TrainingConfig,
    strategy: Strategy,
    base_dir: Path | None = None,
    faults: Iterable[Fault] = (),
    schedule: Schedule | None = None,
    limits: Limits | None = None,
) -> StrategyResult:
    """Plan and simulate one strategy (under ``faults``: see :mod:`simulator.hardware.faults`).

    A strategy whose schedule is ``file:PATH.csv`` runs ``schedule`` when given
    (the file parsed already), else the file, read relative to ``base_dir``.
    The arguments are checked first, as a scenario file's are
    (:mod:`simulator.experiment.arguments`, raising ConfigError), and the run's sizes
    against ``limits`` (default :class:`~simulator.scenario.limits.Limits`).
    """
    faults, limits = check_run(
        cluster, model, training, strategy, faults, schedule, base_dir, limits
    )
    return simulate_strategy(cluster, model, training, strategy, base_dir, faults, schedule, limits)


def simulate_strategy(
    cluster: ClusterSpec,
    model: Any,
    training: TrainingConfig,
    strategy: Strategy,
    base_dir: Path | None = None,
    faults: Iterable[Fault] = (),
    schedule: Schedule | None = None,
    limits: Limits | None = None,
) -> StrategyResult:
    """:func:`run_strategy` for arguments checked already (a planner's layouts)."""
    if schedule is None:
        schedule = read_schedule_file(strategy, base_dir)
    with collector_paused():
        plan = build_plan(cluster, model, training, strategy, schedule)
        return execute(plan, limits=limits, faults=faults)


def run_scenario(scenario: Scenario | str | Path, progress: bool = False) -> ScenarioResult:
    """Check every strategy, then run each (see the module docstring).

    ``scenario`` is a :class:`~simulator.scenario.parse.Scenario` or the path of a
    scenario file. ``progress`` shows a progress bar per strategy on standard
    error (when it is a terminal), after saying how many events a large run will take.
    """
    check_argument("run_scenario", "progress", progress, FLAG)
    scenario = scenario_of("run_scenario", scenario)
    with collector_paused():
        plans = [
            build_plan(
                scenario.cluster,
                scenario.model,
                scenario.training,
                s,
                scenario.schedules.get(s.name),
            )
            for s in scenario.strategies
        ]
        result = ScenarioResult(scenario.name)
        for plan in plans:
            result.results.append(execute(plan, progress, scenario.limits, scenario.faults))
    return result
