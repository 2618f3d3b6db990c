"""Run a scenario over a grid of values: what-if questions as one command.

``vary`` maps a dotted key of the scenario file to its values:
``cluster.nodes``, ``cluster.inter_node.bandwidth_gbs``,
``training.global_batch``, ``model.layers``, ``seed`` ... A key under
``strategy.`` (``strategy.microbatches``) sets that key in every
``[[strategy]]``. The grid is every combination of the values (the product,
first key slowest), or with ``zip`` the i-th value of every key together.

Every point is checked like a scenario file before anything runs (a value a
key does not allow stops the sweep with one error line); then every
(point, strategy) pair is simulated, on local processes or Dask (see
:mod:`simulator.planner.executor`). A strategy that does not fit a point
(fewer devices than it needs, out of memory) is recorded with its status and
the sweep goes on.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..hardware.units import format_bytes, time_unit
from ..keys import check_instance
from ..scenario.limits import Limits, raised
from ..scenario.parse import LIMITS, parse_scenario
from ..scenario.schema import Reader
from ..scenario.tomlfile import check_depth
from .axes import result_axis, scenario_axis
from .executor import Task, check_arguments, run_tasks
from .files import check_vary, read_toml, sweep_settings
from .results import pct, text_table

DEFAULT_METRIC = "iteration_time_s"
#: What ``sweep``'s first argument may be.
SWEEP_FORMS = "give the path of a scenario file or its parsed TOML as a dict"


def grid(
    vary: dict[str, list[Any]], zipped: bool = False, limits: Limits | None = None
) -> list[dict[str, Any]]:
    """The points of the sweep, each a ``{key: value}`` dict, in a fixed order; their
    number is checked against ``limits.max_sweep_points`` before any is made."""
    keys = list(vary)
    if zipped:
        lengths = {len(v) for v in vary.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k} has {len(v)}" for k, v in vary.items())
            raise ScenarioError(f"zip needs as many values for every key ({sizes})")
        count = lengths.pop() if lengths else 0
        combos: Iterable[tuple] = zip(*vary.values(), strict=True)
    else:
        count = math.prod(len(v) for v in vary.values())
        combos = itertools.product(*vary.values())
    (limits or Limits()).check(
        "max_sweep_points",
        count,
        "the sweep's points (" + ("the values of each key" if zipped else "the product of "
        + " x ".join(str(len(v)) for v in vary.values())) + ")",
    )  # fmt: skip
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def apply(data: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` of parsed TOML ``data`` to ``value`` (tables are made
    as needed; ``strategy.KEY`` sets KEY in every strategy)."""
    parts = key.split(".")
    if parts[0] == "strategy":
        tables = data.get("strategy")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ScenarioError(f"sweep key {key!r}: the scenario has no [[strategy]] tables")
        for table in tables:
            apply(table, ".".join(parts[1:]), value)
        return
    for part in parts[:-1]:
        table = data.setdefault(part, {})
        if not isinstance(table, dict):
            raise ScenarioError(f"sweep key {key!r}: {part!r} is not a table")
        data = table
    data[parts[-1]] = value


#: The status of a run an interrupted sweep never finished.
NOT_RUN = "not run"


@dataclass
class SweepResult:
    """Per point of the grid, its values and the run results of every strategy.

    ``interrupted`` names the signal that stopped the sweep (``"SIGINT"`` for
    Ctrl-C, ``"SIGTERM"``), or is ``""``; the runs it stopped before they
    finished have status ``"not run"``, so a partial table never looks complete.
    """

    name: str
    keys: list[str]
    points: list[dict[str, Any]]
    results: list[list[dict[str, Any]]]
    metric: str = DEFAULT_METRIC
    interrupted: str = ""

    @property
    def runs(self) -> int:
        """Every (point, strategy) of the sweep."""
        return sum(len(rs) for rs in self.results)

    def count(self, *statuses: str) -> int:
        """Runs whose status is one of ``statuses``."""
        return sum(r["status"] in statuses for rs in self.results for r in rs)

    @property
    def finished(self) -> int:
        """Runs that finished, whatever their status."""
        return self.runs - self.count(NOT_RUN)

    def to_json(self) -> dict[str, Any]:
        """``{"points": [{"values": {...}, "results": [<run results>]}]}``."""
        return {
            "points": [
                {"values": values, "results": results}
                for values, results in zip(self.points, self.results, strict=True)
            ]
        }

    def to_frame(self) -> Any:
        """One row per (point, strategy): the varied values, then every scalar result."""
        import pandas as pd

        rows = []
        for values, results in zip(self.points, self.results, strict=True):
            for r in results:
                scalars = {k: v for k, v in r.items() if not isinstance(v, list | dict)}
                rows.append({**values, **scalars})
        frame = pd.DataFrame(rows)
        first = [*self.keys, "strategy", "status"]
        return frame[[*first, *(c for c in frame.columns if c not in first)]]

    def table(self) -> str:
        """A text table of every (point, strategy)."""
        times = [
            r["iteration_time_s"] for rs in self.results for r in rs if r.get("iteration_time_s")
        ]
        scale, unit = time_unit(max(times, default=0.0))
        header = [*self.keys, "strategy", f"step ({unit})", "MFU", "peak memory", "status"]
        rows = [header]
        for values, results in zip(self.points, self.results, strict=True):
            for r in results:
                step, peak = r.get("iteration_time_s"), r.get("peak_memory_bytes")
                rows.append(
                    [
                        *(str(values[k]) for k in self.keys),
                        r["strategy"],
                        "-" if step is None else f"{step / scale:.3f}",
                        pct(r.get("mfu")),
                        "-" if peak is None else format_bytes(peak),
                        r["status"] if r["status"] == "ok" else r["status"].upper(),
                    ]
                )
        return text_table(rows, left=tuple(range(len(self.keys) + 1)))

    def plot(self, path: str | Path | None = None, metric: str | None = None) -> Any:
        """A line of ``metric`` against the first varied key per strategy (and per
        value of the other keys), runs that did not finish left out: saved to
        ``path``, or returned as a matplotlib figure. The axes say what the
        numbers are, in units that read well (:mod:`simulator.planner.axes`)."""
        import matplotlib.pyplot as plt

        from ..viz.gantt import finish_figure

        metric = metric or self.metric
        x_key, others = self.keys[0], self.keys[1:]
        lines: dict[str, list[tuple[Any, float]]] = {}
        for values, results in zip(self.points, self.results, strict=True):
            for r in results:
                value = r.get(metric)
                if r["status"] != "ok" or not isinstance(value, int | float):
                    continue
                label = r["strategy"] + "".join(f", {k}={values[k]}" for k in others)
                lines.setdefault(label, []).append((values[x_key], value))
        if not lines:
            raise ScenarioError(
                f"no finished run has a number for metric {metric!r}; choose a numeric key of "
                "the results JSON such as iteration_time_s, mfu or peak_memory_bytes"
            )
        y_label, y_scale = result_axis(metric, [v for pts in lines.values() for _, v in pts])
        x_label = scenario_axis(x_key)
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        for label, pts in lines.items():
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, [y / y_scale for y in ys], "-o", ms=4, label=label)
        ax.set_xlabel(f"{x_label}  [{x_key}]")
        ax.set_ylabel(y_label)
        what = y_label.split(" (")[0]
        ax.set_title(f"{self.name}: {what} against {x_label.split(' (')[0]}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return finish_figure(fig, path)

    def write(self, out_dir: str | Path) -> list[Path]:
        """``sweep.csv``, ``sweep.json`` and ``sweep.png`` into ``out_dir``; the picture
        only when a run finished with status ok (there is nothing to draw otherwise)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(out / "sweep.csv", index=False)
        (out / "sweep.json").write_text(json.dumps(self.to_json(), indent=1) + "\n")
        if not self.count("ok"):
            return [out / "sweep.csv", out / "sweep.json"]
        self.plot(out / "sweep.png")
        return [out / "sweep.csv", out / "sweep.json", out / "sweep.png"]


def sweep(
    scenario: str | Path | dict[str, Any],
    vary: dict[str, list[Any]] | None = None,
    *,
    zip: bool | None = None,
    metric: str | None = None,
    base_dir: str | Path | None = None,
    workers: int | None = None,
    dask: str | None = None,
    progress: bool = False,
    limits: Limits | Mapping[str, int] | None = None,
) -> SweepResult:
    """Run every strategy of ``scenario`` at every point of the grid.

    Args:
        scenario: a scenario file (an optional ``[sweep]`` table gives
            ``vary``, ``zip`` and ``metric``) or its parsed TOML as a dict.
        vary: dotted key -> values (see the module docstring); replaces the
            file's ``[sweep] vary`` when given.
        zip: pair the values instead of taking their product.
        metric: the results key :meth:`SweepResult.plot` draws.
        base_dir: where relative paths in the scenario start (default: the
            file's folder).
        workers: as for :func:`simulator.plan`.
        dask: as for :func:`simulator.plan`.
        progress: as for :func:`simulator.plan`.
        limits: limits to raise, e.g. ``{"max_sweep_points": 5000}``, over the
            scenario's ``[limits]`` table; the number of points is checked before
            any point is made.
    """
    args = check_arguments(
        "sweep", zip=zip, metric=metric, workers=workers, dask=dask, progress=progress
    )
    zip, metric, workers = args["zip"], args["metric"], args["workers"]
    if base_dir is not None:
        check_instance("sweep", "base_dir", base_dir, (str, Path))
    override = raised("sweep", limits)
    if isinstance(scenario, dict):
        check_depth(scenario, "scenario", Limits(**override))
        data, source = copy.deepcopy(scenario), "scenario"
        base = Path(base_dir) if base_dir else Path.cwd()
    else:
        check_instance("sweep", "scenario", scenario, (str, Path, dict), SWEEP_FORMS)
        data, source = read_toml(scenario, override), str(scenario)
        base = Path(base_dir) if base_dir else Path(scenario).parent
    settings = sweep_settings(data.pop("sweep", {}), source)
    found = Reader(source).table(data.get("limits", {}), "[limits]", LIMITS)
    checked = Limits(**{**found, **override})
    vary = check_vary(vary, "sweep") if vary is not None else settings.get("vary")
    if not vary:
        raise ScenarioError(
            f"{source}: nothing to sweep; give --vary KEY=V1,V2 or a [sweep] table with vary"
        )
    points = grid(vary, settings.get("zip", False) if zip is None else zip, checked)
    scenarios = []
    for values in points:
        point = copy.deepcopy(data)
        for key, value in values.items():
            apply(point, key, value)
        where = ", ".join(f"{k} = {v}" for k, v in values.items())
        scenarios.append(parse_scenario(point, f"{source} (at {where})", base, override))
    tasks = [
        Task(
            s.cluster,
            s.model,
            s.training,
            strategy,
            s.schedules.get(strategy.name),
            keep_devices=True,
        )
        for s in scenarios
        for strategy in s.strategies
    ]
    outcome = run_tasks(tasks, workers=workers, dask=dask, progress=progress, label="sweep")
    results, i = [], 0
    for s in scenarios:
        mine = []
        for strategy in s.strategies:
            r = outcome.results[i]
            i += 1
            if r is None:
                r = {"status": NOT_RUN, "message": f"{outcome.interrupted} came first"}
            mine.append(r if "strategy" in r else {"strategy": strategy.name, **r})
        results.append(mine)
    return SweepResult(
        name=scenarios[0].name,
        keys=list(vary),
        points=points,
        results=results,
        metric=metric or settings.get("metric", DEFAULT_METRIC),
        interrupted=outcome.interrupted,
    )
