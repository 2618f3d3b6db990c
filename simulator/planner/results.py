"""What a plan found: every simulated layout with its metrics, fastest first.

:class:`PlanResult` is what :func:`simulator.plan` returns. ``to_frame()``
gives a pandas DataFrame (one row per simulated layout), ``to_json()`` the
``plan --json`` document, ``table(k)`` the printed top ``k`` and ``write(dir)``
the files: ``plan.csv`` (and ``plan.parquet`` when pyarrow is installed),
``plan.json``, ``pareto.png`` and ``best.toml``, a scenario holding the best
``k`` layouts for ``python -m simulator run``.

Rows are sorted by status (ok, then out of memory, then errors), step time
and name, a total order: the same layouts give the same files whichever
backend simulated them and in whatever order they finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..hardware import ClusterSpec
from ..hardware.units import format_bytes, time_unit
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from .space import LAYOUT_KEYS

#: The run metrics a plan keeps per layout (the fractions may be missing: then None).
METRICS = (
    "status",
    "iteration_time_s",
    "mfu",
    "tokens_per_s",
    "peak_memory_bytes",
    "compute_fraction",
    "exposed_comm_fraction",
    "bubble_fraction",
)
_STATUS_ORDER = {"ok": 0, "oom": 1}


def sort_key(row: dict[str, Any]) -> tuple:
    """Fits before out of memory before errors; then fastest; then by name."""
    time = row.get("iteration_time_s")
    return (
        _STATUS_ORDER.get(row["status"], 2),
        time if time is not None else float("inf"),
        row["name"],
    )


def make_row(
    strategy: Strategy, micro_batch: int, estimate: float, metrics: dict[str, Any]
) -> dict[str, Any]:
    """One simulated layout: its name, layout keys, memory estimate and metrics."""
    from .space import layout_keys

    return {
        "name": strategy.name,
        **layout_keys(strategy),
        "micro_batch_size": micro_batch,
        **{k: metrics.get(k) for k in METRICS},
        "memory_estimate_bytes": estimate,
        "loss": metrics.get("loss"),
        "message": metrics.get("message", ""),
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def text_table(rows: list[list[str]], left: tuple[int, ...] = ()) -> str:
    """Columns padded to their widest cell, a rule under the header; the columns in
    ``left`` aligned left, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class PlanResult:
    """The outcome of a plan (see the module docstring).

    Attributes:
        name: names the output folder and the best-layouts scenario.
        rows: simulated layouts, sorted (see :func:`sort_key`).
        pruned: layouts rejected before simulation, by rule.
        enumerated: distinct layouts considered.
        interrupted: the signal that stopped the simulations (``"SIGINT"`` for
            Ctrl-C, ``"SIGTERM"``), or ``""``; rows holds those that finished.
        scheduled: layouts that were to be simulated (the rest were pruned).
        devices: ``dp * tp * pp`` of every layout.
    """

    name: str
    cluster: ClusterSpec
    model: Any
    training: TrainingConfig
    base: Strategy
    rows: list[dict[str, Any]]
    pruned: dict[str, int]
    enumerated: int
    top: int = 5
    interrupted: str = ""
    strategies: dict[str, Strategy] = field(default_factory=dict, repr=False)
    scheduled: int = 0
    devices: int = 0

    @property
    def evaluated(self) -> int:
        return len(self.rows)

    def to_json(self) -> dict[str, Any]:
        """``{"evaluated": N, "pruned": {rule: count}, "layouts": [...]}``, fastest first."""
        return {"evaluated": self.evaluated, "pruned": dict(self.pruned), "layouts": self.rows}

    def to_frame(self) -> Any:
        """The simulated layouts as a pandas DataFrame, one row each, fastest first."""
        import pandas as pd

        columns = ["name", *LAYOUT_KEYS, "micro_batch_size", *METRICS]
        columns += ["memory_estimate_bytes", "loss", "message"]
        return pd.DataFrame(self.rows, columns=columns)

    def best(self, k: int | None = None) -> list[Strategy]:
        """The ``k`` fastest layouts that fit, as strategies ready to run."""
        ok = [r for r in self.rows if r["status"] == "ok"]
        return [self.strategies[r["name"]] for r in ok[: k or self.top]]

    def table(self, k: int | None = None) -> str:
        """The top ``k`` layouts as a text table."""
        rows = self.rows[: k or self.top]
        times = [r["iteration_time_s"] for r in rows if r["iteration_time_s"] is not None]
        scale, unit = time_unit(max(times, default=0.0))
        header = ["#", "layout", f"step ({unit})", "MFU", "tokens/s", "peak memory"]
        header += ["compute", "exposed comm", "bubble", "status"]
        table = [header]
        for i, r in enumerate(rows, 1):
            step = r["iteration_time_s"]
            table.append(
                [
                    str(i),
                    r["name"],
                    "-" if step is None else f"{step / scale:.3f}",
                    pct(r["mfu"]),
                    "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}",
                    "-" if r["peak_memory_bytes"] is None else format_bytes(r["peak_memory_bytes"]),
                    pct(r["compute_fraction"]),
                    pct(r["exposed_comm_fraction"]),
                    pct(r["bubble_fraction"]),
                    r["status"] if r["status"] == "ok" else r["status"].upper(),
                ]
            )
        return text_table(table, left=(1,))

    def summary(self) -> str:
        """How many layouts were considered, rejected by each rule, simulated."""
        lines = [f"{self.enumerated} distinct layouts; rejected before simulation:"]
        width = max((len(str(n)) for n in self.pruned.values()), default=1)
        lines += [f"  {n:>{width}}  {rule}" for rule, n in self.pruned.items()]
        if not self.pruned:
            lines.append("  none")
        status = {s: sum(r["status"] == s for r in self.rows) for s in ("ok", "oom")}
        errors = self.evaluated - status["ok"] - status["oom"]
        lines.append(
            f"simulated {self.evaluated}: {status['ok']} fit, {status['oom']} out of memory, "
            f"{errors} failed"
            + (f" (interrupted, of up to {self.scheduled})" if self.interrupted else "")
        )
        return "\n".join(lines)

    def drawable(self) -> list[dict[str, Any]]:
        """The rows the picture can place: those with a step time and a peak memory."""
        return [
            r
            for r in self.rows
            if r["status"] in ("ok", "oom")
            and (r["iteration_time_s"] or 0) > 0
            and r["peak_memory_bytes"] is not None
        ]

    def pareto(self, path: str | Path | None = None) -> Any:
        """Step time against peak memory, the Pareto front and the device memory:
        saved to ``path``, or returned as a matplotlib figure."""
        from . import pareto

        rows = self.drawable()
        if not rows:
            raise ScenarioError(
                f"plan {self.name!r}: no simulated layout has a step time to draw "
                f"({self.evaluated} simulated)"
            )
        title = (
            f"{self.name}: {len(rows)} layouts on {self.cluster.nodes} x "
            f"{self.cluster.devices_per_node} {self.cluster.device.name}"
        )
        return pareto.draw(rows, self.cluster.device.memory_bytes, title, path)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the files of the module docstring into ``out_dir``; returns their paths.
        The picture is left out when no layout has a step time to draw, and
        ``best.toml`` when no layout fits."""
        from .files import scenario_toml

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frame = self.to_frame()
        written = [out / "plan.csv", out / "plan.json", out / "pareto.png", out / "best.toml"]
        frame.to_csv(written[0], index=False)
        try:
            frame.to_parquet(out / "plan.parquet", index=False)
            written.insert(1, out / "plan.parquet")
        except ImportError:  # pyarrow (or fastparquet) is optional
            pass
        written_json = json.dumps(self.to_json(), indent=1) + "\n"
        (out / "plan.json").write_text(written_json)
        if self.drawable():
            self.pareto(out / "pareto.png")
        else:
            written.remove(out / "pareto.png")
        best = self.best()
        if not best:  # nothing fits: there is no scenario to write
            return [p for p in written if p.name != "best.toml"]
        comment = (
            f"The {len(best)} fastest layouts `python -m simulator plan` found.\n"
            "Open their Gantt charts with: python -m simulator run best.toml"
        )
        (out / "best.toml").write_text(
            scenario_toml(
                f"{self.name}_best", self.cluster, self.model, self.training, best, comment
            )
        )
        return written
