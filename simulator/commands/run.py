"""``python -m simulator run SCENARIO.toml [--out DIR] [--json] [--no-files] [--quiet]``.

Checks every strategy, simulates each, prints the comparison table (or, with
``--json``, only the results JSON) and writes ``results.json`` and, per
strategy, ``<name>.gantt.png``, ``<name>.trace.json`` (``.trace.json.gz`` for
large traces) and ``<name>.memory.png`` (plus ``compare.png``) into
``--out`` (default ``out/<scenario name>``). ``--no-files`` writes only
``results.json``. A progress bar shows on standard error while a long run
simulates (when it is a terminal; ``--quiet`` hides it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..experiment.runner import run_scenario
from ..scenario.limits import add_limit_flags, limit_flags, limit_names
from ..scenario.parse import load_scenario
from ..scenario.paths import file_stem, prepare_output_dir
from ..viz.outputs import write_outputs, write_results
from ..viz.report import comparison_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="simulate the strategies of a scenario file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", help="path to a scenario TOML file")
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/<scenario name>)")
    p.add_argument("--json", action="store_true", help="print only the results JSON")
    p.add_argument(
        "--no-files",
        action="store_true",
        help="write only results.json: no pictures, no traces",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_limit_flags(p, *limit_names())
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, limit_flags(args))
    out = Path(args.out) if args.out else Path("out") / file_stem(scenario.name)
    prepare_output_dir(out)  # before the simulation: a bad --out costs nothing
    result = run_scenario(scenario, progress=not (args.quiet or args.json))
    written = [write_results(result, out)] if args.no_files else write_outputs(result, out)
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
        return 0
    cluster = scenario.cluster
    print(f"scenario {scenario.name!r} on {cluster.describe()} ({cluster.name})")
    capacities = [spec.device.memory_bytes for _, spec in cluster.kinds()]
    fp8 = [s.name for s in scenario.strategies if s.precision == "fp8"]
    print(comparison_table([r.metrics for r in result.results], capacities, fp8))
    for r in result.results:
        if r.status != "ok":
            print(f"{r.name}: {r.metrics['message']}")
    files = "results.json" if args.no_files else (
        "results.json, *.gantt.png, *.trace.json, *.memory.png"
        + (", compare.png" if len(result.results) > 1 else "")
    )  # fmt: skip
    print(f"wrote {len(written)} files to {out}/ ({files})")
    return 0
