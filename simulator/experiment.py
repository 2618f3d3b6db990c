"""Run strategies and scenarios, and write their results.

``run_strategy`` plans and simulates one strategy; ``run_scenario`` checks
every strategy of a scenario first (so a bad layout stops everything before
any time is spent), then runs them one by one. A strategy that runs out of
memory is reported with status ``"oom"`` and the others still run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutOfMemoryError
from .hardware import ClusterSpec
from .metrics import summarize
from .parallel.plan import Plan, build_plan, gather_params
from .parallel.strategy import Strategy
from .runtime import Runtime
from .scenario import Scenario
from .training import TrainingConfig


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
    def trace(self):
        return self.runtime.engine.trace

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
        return {"scenario": self.name, "results": [r.metrics for r in self.results]}

    def __getitem__(self, name: str) -> StrategyResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)


def execute(plan: Plan) -> StrategyResult:
    """Simulate a plan; out-of-memory becomes ``status = "oom"`` with the message."""
    runtime = Runtime(plan)
    status, message = "ok", ""
    try:
        runtime.run()
    except OutOfMemoryError as err:
        status, message = "oom", str(err)
    metrics = summarize(runtime)
    metrics["status"], metrics["message"] = status, message
    return StrategyResult(plan, runtime, metrics)


def run_strategy(
    cluster: ClusterSpec,
    model: Any,
    training: TrainingConfig,
    strategy: Strategy,
    base_dir: Path | None = None,
) -> StrategyResult:
    """Plan and simulate one strategy."""
    return execute(build_plan(cluster, model, training, strategy, base_dir))


def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Check every strategy, then run each (see the module docstring)."""
    plans = [
        build_plan(scenario.cluster, scenario.model, scenario.training, s, scenario.base_dir)
        for s in scenario.strategies
    ]
    result = ScenarioResult(scenario.name)
    for plan in plans:
        result.results.append(execute(plan))
    return result


def file_stem(name: str) -> str:
    return re.sub(r"[^\w.+-]", "_", name)


def write_outputs(result: ScenarioResult, out_dir: str | Path) -> list[Path]:
    """Write ``results.json``, per strategy a Gantt chart, a Chrome trace and a memory
    plot, and ``compare.png`` when there are several strategies. Returns the paths."""
    from . import plots  # matplotlib is imported only when pictures are drawn

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_text(json.dumps(result.to_json(), indent=2) + "\n")
    for r in result.results:
        stem = file_stem(r.name)
        r.trace.write_chrome(out / f"{stem}.trace.json")
        plots.gantt(r, out / f"{stem}.gantt.png")
        plots.memory(r, out / f"{stem}.memory.png")
        written += [
            out / f"{stem}.gantt.png",
            out / f"{stem}.trace.json",
            out / f"{stem}.memory.png",
        ]
    if len(result.results) > 1:
        plots.compare(result, out / "compare.png")
        written.append(out / "compare.png")
    return written
