"""Run strategies and scenarios, and write their results.

``run_strategy`` plans and simulates one strategy; ``run_scenario`` checks
every strategy of a scenario first (so a bad layout stops everything before
any time is spent), then runs them one by one. A strategy that runs out of
memory is reported with status ``"oom"``, one whose loss becomes NaN or
infinite with ``"diverged"``, and the others still run.

``results.json`` is strict JSON: a number that is not finite is written as
``null``. Traces of more than :data:`GZIP_EVENTS` events are written
gzip-compressed (``.trace.json.gz``, which Perfetto opens as it is), and past
:data:`GROUP_EVENTS` with one process per group of devices in lockstep
instead of one per device.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeviceFailedError, DivergedError, OutOfMemoryError
from .faults import Fault
from .hardware import ClusterSpec
from .limits import Limits
from .metrics import summarize
from .parallel.plan import Plan, build_plan, gather_params
from .parallel.strategy import Strategy
from .paths import file_stem
from .progress import ProgressBar, estimate_events
from .runtime import Runtime, collector_paused
from .scenario import Scenario
from .trace import Trace
from .training import TrainingConfig

#: Traces with more events than this are written gzip-compressed.
GZIP_EVENTS = 200_000
#: ... and with more than this, with one process per group of devices in lockstep.
GROUP_EVENTS = 2_000_000


@dataclass
class StrategyResult:
    """One simulated strategy: its metrics (the results-JSON entry), plan and runtime."""

    plan: Plan
    runtime: Runtime
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
        return self.runtime.engine.trace

    @property
    def step_window(self) -> tuple[float, float]:
        """The last step's start and end, simulated seconds."""
        record = self.runtime.records[-1]
        return record.start, record.end

    def memory(self, device: int) -> dict[str, int]:
        """Bytes by category on ``device`` at their peaks (see :mod:`simulator.engine.memory`)."""
        return self.runtime.engine.memory[device].breakdown()

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
    with its message. ``progress`` shows a bar (module :mod:`simulator.progress`); a
    run estimated past ``limits.max_events`` is refused before it starts."""
    runtime = Runtime(plan, faults=faults)
    (limits or Limits()).check(
        "max_events",
        estimate_events(runtime),
        f"strategy {plan.strategy.name!r}: the estimated events of the run",
    )
    status, message = "ok", ""
    try:
        with ProgressBar(runtime, progress) as bar:
            if bar.active:
                runtime.progress = bar.update
            runtime.run()
    except OutOfMemoryError as err:
        status, message = "oom", str(err)
    except DivergedError as err:
        status, message = "diverged", str(err)
    except DeviceFailedError as err:
        status, message = "failed", str(err)
    metrics = summarize(runtime)
    metrics["status"], metrics["message"] = status, message
    return StrategyResult(plan, runtime, metrics)


def run_strategy(
    cluster: ClusterSpec,
    model: Any,
    training: TrainingConfig,
    strategy: Strategy,
    base_dir: Path | None = None,
    faults: Iterable[Fault] = (),
) -> StrategyResult:
    """Plan and simulate one strategy (under ``faults``: see :mod:`simulator.faults`)."""
    with collector_paused():
        return execute(build_plan(cluster, model, training, strategy, base_dir), faults=faults)


def run_scenario(scenario: Scenario, progress: bool = False) -> ScenarioResult:
    """Check every strategy, then run each (see the module docstring).

    ``progress`` shows a progress bar per strategy on standard error (when it is
    a terminal), after saying how many events a large run will take.
    """
    with collector_paused():
        plans = [
            build_plan(scenario.cluster, scenario.model, scenario.training, s, scenario.base_dir)
            for s in scenario.strategies
        ]
        result = ScenarioResult(scenario.name)
        for plan in plans:
            result.results.append(execute(plan, progress, scenario.limits, scenario.faults))
    return result


def _expanded_events(result: StrategyResult) -> int:
    """Events of the trace listed per device."""
    trace = result.trace
    return sum(len(trace.groups[trace.tracks[t][0]]) for t in trace.track)


def trace_path(out: Path, stem: str, result: StrategyResult) -> Path:
    """Where a strategy's Chrome trace goes: gzip-compressed when it is large."""
    suffix = ".trace.json.gz" if _expanded_events(result) > GZIP_EVENTS else ".trace.json"
    return out / f"{stem}{suffix}"


def write_results(result: ScenarioResult, out_dir: str | Path) -> Path:
    """Write ``results.json`` (strict JSON) into ``out_dir``; returns its path."""
    path = Path(out_dir) / "results.json"
    path.write_text(json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")
    return path


def write_outputs(result: ScenarioResult, out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, per strategy a Gantt chart, a Chrome trace and a memory
    plot, and ``compare.png`` when there are several strategies. Returns the paths."""
    from . import plots  # matplotlib is imported only when pictures are drawn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [write_results(result, out)]
    for r in result.results:
        stem = file_stem(r.name)
        trace = trace_path(out, stem, r)
        r.trace.write_chrome(trace, by_group=_expanded_events(r) > GROUP_EVENTS)
        plots.gantt(r, out / f"{stem}.gantt.png")
        plots.memory(r, out / f"{stem}.memory.png")
        written += [out / f"{stem}.gantt.png", trace, out / f"{stem}.memory.png"]
    if len(result.results) > 1:
        plots.compare(result, out / "compare.png")
        written.append(out / "compare.png")
    return written
