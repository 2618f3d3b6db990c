"""The README's and the documentation's result tables and pictures, made by the code
they describe: ``python -m simulator.docs_assets`` remakes them all.

Every table a page shows sits in a code block after a marker comment,
``<!-- table: NAME -->``; every picture under ``docs/images/`` that a run
draws has a sidecar, ``docs/images/NAME.json``, holding the numbers the
picture was drawn from -- the Gantt chart's title, the comparison's rows, the
sweep's points. ``tests/test_doc_tables.py`` runs the same scenarios with the
current code and fails when a table or a sidecar differs, naming this command,
so a page cannot show a number the code no longer gives. The plan's Pareto
picture takes minutes to search; its sidecar records the fastest layout, which
the test simulates alone.

Run from the repository's root::

    python -m simulator.docs_assets            # every table and picture
    python -m simulator.docs_assets tp4-gantt  # only the named ones
    python -m simulator.docs_assets --check    # say what is stale; write nothing

The pictures of the notebooks (``nb01-...`` to ``nb06-...``) are the
notebooks' own outputs, and ``calibration.png`` is
``benchmarks/megatron_calibration.py``'s; this leaves them alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


@dataclass(frozen=True)
class Table:
    """A comparison table a page shows, in the code block after ``<!-- table: NAME -->``."""

    name: str
    page: str  # relative to the repository's root
    scenario: str  # relative to scenarios/
    kind: str = "run"  # "run": the comparison table; "sweep": the sweep's table
    head: str = ""  # lines of the block before the table (the command, what it prints first)
    tail: str = ""  # ... and after it
    explain: tuple[str, ...] = ()  # strategies whose message (why it failed) follows the table


@dataclass(frozen=True)
class Image:
    """A picture under ``docs/images/`` drawn from one scenario's results."""

    name: str  # docs/images/NAME.png and NAME.json
    scenario: str
    kind: str  # "gantt", "compare", "sweep" or "pareto"
    strategy: str = ""  # the strategy a Gantt chart shows


SWEEP = "planner/sweep_gpt3_network.toml"
PLAN = "planner/plan_gpt3_175b.toml"
TABLES = (
    Table("quickstart", "README.md", "quickstart.toml"),
    Table("pipeline_schedules", "docs/parallelism/pipeline.md", "pipeline_schedules.toml"),
    Table("data_parallel", "docs/parallelism/data.md", "data_parallel.toml"),
    Table("tensor_parallel", "docs/parallelism/tensor.md", "tensor_parallel.toml"),
    Table("tp_comm_overlap", "docs/parallelism/tensor.md", "tp_comm_overlap.toml"),
    Table("tiny_gpt", "docs/models.md", "tiny_gpt.toml"),
    Table("gpt3_memory", "docs/models.md", "gpt3_memory.toml", explain=("one-device",)),
    Table("gpt3_175b_layouts", "docs/parallelism/hybrid.md", "gpt3_175b_layouts.toml"),
    Table("long_context", "docs/parallelism/context.md", "long_context.toml"),
    Table(
        "sweep_gpt3_network",
        "docs/planner.md",
        SWEEP,
        kind="sweep",
        head="$ python -m simulator sweep scenarios/planner/sweep_gpt3_network.toml\n"
        "sweep 'gpt3_175b_network' over 4 points: cluster.inter_node.bandwidth_gbs",
        tail="wrote 3 files to out/gpt3_175b_network_sweep/ (sweep.csv, sweep.json, sweep.png)",
    ),
)
PICTURES = (
    Image("quickstart-1f1b-gantt", "quickstart.toml", "gantt", "1f1b"),
    Image("zb-h1-gantt", "pipeline_schedules.toml", "gantt", "zb-h1"),
    Image("ddp-buckets-gantt", "data_parallel.toml", "gantt", "ddp-buckets"),
    Image("tp4-gantt", "tensor_parallel.toml", "gantt", "tp4"),
    Image("gpt3-layouts-compare", "gpt3_175b_layouts.toml", "compare"),
    Image("sweep-gpt3-network", SWEEP, "sweep"),
    Image("plan-gpt3-pareto", PLAN, "pareto"),
)


# -- running ----------------------------------------------------------------------------
@functools.cache
def results(scenario: str) -> Any:
    """The scenario's results with the current code: a run, a sweep or a plan."""
    import simulator as sim

    path = ROOT / "scenarios" / scenario
    if scenario == SWEEP:
        return sim.sweep(path, workers=1, progress=False)
    if scenario == PLAN:
        return sim.plan(path, workers=2, progress=False)
    return sim.run_scenario(sim.load_scenario(path))


def table_text(table: Table, result: Any) -> str:
    """The text of the table's code block."""
    if table.kind == "sweep":
        body = result.table()
    else:
        from simulator import comparison_table, load_scenario

        scenario = load_scenario(ROOT / "scenarios" / table.scenario)
        body = comparison_table(
            [r.metrics for r in result.results], scenario.cluster.device.memory_bytes
        )
        for name in table.explain:
            body += f"\n{name}: {result[name].metrics['message']}"
    return "\n".join(part for part in (table.head, body, table.tail) if part)


# -- what a picture is drawn from -------------------------------------------------------
def numbers(image: Image, result: Any) -> dict[str, Any]:
    """The numbers ``image`` shows, as it prints them: what its sidecar holds."""
    if image.kind == "gantt":
        from simulator.hardware.units import time_unit
        from simulator.viz.gantt import title
        from simulator.viz.views import shown_devices

        run = result[image.strategy]
        lo, hi = run.step_window
        scale, unit = time_unit(hi - lo)
        shown, note = shown_devices(run)
        return {"title": title(run, unit, scale), "rows": shown, "note": note}
    if image.kind == "compare":
        from simulator.viz.plots import compare_rows

        rows, unit, memory_unit = compare_rows(result)
        keep = ("name", "mark", "step_text", "peak_text")
        shares = ("compute", "exposed", "bubble")
        return {
            "step_unit": unit,
            "memory_unit": memory_unit,
            "rows": [
                {**{k: r[k] for k in keep}, **{k: f"{r[k]:.3f}" for k in shares}} for r in rows
            ],
        }
    if image.kind == "sweep":
        from simulator.planner.axes import result_axis

        metric = result.metric
        values = [r[metric] for rs in result.results for r in rs if r["status"] == "ok"]
        label, scale = result_axis(metric, values)
        points = [
            [str(v[result.keys[0]]), r["strategy"], f"{r[metric] / scale:.4g}"]
            for v, rs in zip(result.points, result.results, strict=True)
            for r in rs
            if r["status"] == "ok"
        ]
        return {"y": label, "points": points}
    if image.kind == "pareto":
        rows = result.drawable()
        best = min((r for r in rows if r["status"] == "ok"), key=lambda r: r["iteration_time_s"])
        import dataclasses

        from simulator.parallel import Strategy

        strategy, default = result.strategies[best["name"]], Strategy()
        keys = {
            f.name: getattr(strategy, f.name)
            for f in dataclasses.fields(strategy)
            if getattr(strategy, f.name) != getattr(default, f.name)
        }
        return {
            "layouts": len(rows),
            "out_of_memory": sum(r["status"] == "oom" for r in rows),
            "fastest": fastest_numbers(best),
            "strategy": keys,
        }
    raise ValueError(f"unknown picture kind {image.kind!r}")


def fastest_numbers(row: dict[str, Any]) -> dict[str, str]:
    """A plan's layout as its picture labels it: name, step time, peak memory."""
    from simulator.hardware.units import format_bytes

    return {
        "name": row["name"],
        "step_s": f"{row['iteration_time_s']:.3f}",
        "peak": format_bytes(row["peak_memory_bytes"]),
    }


def fastest_alone(strategy: dict[str, Any]) -> dict[str, str]:
    """The plan's fastest layout, ``strategy`` (its keys), simulated alone with the
    current code: what the Pareto picture's label says, without the search."""
    import tomllib

    from simulator import run_scenario
    from simulator.scenario.parse import parse_scenario

    path = ROOT / "scenarios" / PLAN
    data = tomllib.loads(path.read_text())
    data.pop("plan")
    data["strategy"] = [strategy]
    run = run_scenario(parse_scenario(data, str(path), path.parent)).results[0]
    return fastest_numbers({**run.metrics, "name": run.name})


def draw(image: Image, result: Any, path: Path) -> None:
    """Draw ``image`` into ``path``."""
    from simulator.viz import plots

    if image.kind == "gantt":
        plots.gantt(result[image.strategy], path)
    elif image.kind == "compare":
        plots.compare(result, path)
    elif image.kind == "sweep":
        result.plot(path)
    else:
        result.pareto(path)


def sidecar(image: Image) -> Path:
    return IMAGES / f"{image.name}.json"


def read_sidecar(image: Image) -> dict[str, Any] | None:
    path = sidecar(image)
    return json.loads(path.read_text()) if path.exists() else None


# -- pages ------------------------------------------------------------------------------
def block_pattern(name: str) -> re.Pattern[str]:
    """The marker of table ``name`` and its code block."""
    return re.compile(rf"(<!-- table: {re.escape(name)} -->\n```[a-z]*\n)(.*?)(\n```)", re.S)


def shown_table(table: Table) -> str | None:
    """The text of the table's code block as the page shows it (None: no marker)."""
    found = block_pattern(table.name).search((ROOT / table.page).read_text())
    return found.group(2) if found else None


def write_table(table: Table, text: str) -> None:
    page = ROOT / table.page
    old = page.read_text()
    pattern = block_pattern(table.name)
    if not pattern.search(old):
        raise SystemExit(f"{table.page} has no '<!-- table: {table.name} -->' before a code block")
    page.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(3), old, count=1))


# -- the command ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.docs_assets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("names", nargs="*", help="tables and pictures to remake (default: all)")
    parser.add_argument("--check", action="store_true", help="say what is stale; write nothing")
    args = parser.parse_args(argv)
    known = {t.name for t in TABLES} | {i.name for i in PICTURES}
    unknown = set(args.names) - known
    if unknown:
        parser.error(f"unknown {sorted(unknown)}; choose from {sorted(known)}")
    wanted = set(args.names) or known
    stale = []
    for table in (t for t in TABLES if t.name in wanted):
        text = table_text(table, results(table.scenario))
        if shown_table(table) != text:
            stale.append(f"table {table.name} in {table.page}")
            if not args.check:
                write_table(table, text)
    for image in (i for i in PICTURES if i.name in wanted):
        result = results(image.scenario)
        now = numbers(image, result)
        if read_sidecar(image) != now:
            stale.append(f"picture docs/images/{image.name}.png")
        if not args.check:
            draw(image, result, IMAGES / f"{image.name}.png")
            sidecar(image).write_text(json.dumps(now, indent=1) + "\n")
    for line in stale:
        print(("stale: " if args.check else "remade: ") + line)
    if not stale:
        print("every table and picture is up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
