"""``python -m simulator run SCENARIO.toml [--out DIR] [--json] [--no-files] [--trace all]
[--quiet]``.

Checks every strategy, simulates each, prints the comparison table (or, with
``--json``, only the results JSON) and writes ``results.json`` and, per
strategy, ``<name>.gantt.png``, ``<name>.trace.json`` (``.trace.json.gz`` for
large traces) and ``<name>.memory.png`` (plus ``compare.png``) into
``--out`` (default ``out/<scenario name>``). ``--no-files`` writes only
``results.json``. The trace has one process per group of devices simulated as
one (a tensor-parallel group, folded replicas), named after its devices;
``--trace all`` writes one per device. A progress bar shows on standard error
while a long run simulates and while the files are written (when it is a
terminal; ``--quiet`` hides it); the last line names the files as written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..scenario.limits import add_limit_flags, limit_flags, limit_names


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
    p.add_argument(
        "--trace",
        choices=("groups", "all"),
        default="groups",
        help="the Chrome trace's processes: one per group of devices simulated as one "
        "(default), or one per device (all)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_limit_flags(p, *limit_names())
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    # imported here, not when the command line is built (``--help`` stays quick)
    from ..experiment.runner import run_scenario
    from ..scenario.parse import load_scenario
    from ..scenario.paths import file_stem, prepare_output_dir
    from ..viz.outputs import FileWriter, describe, write_results
    from ..viz.report import comparison_table

    scenario = load_scenario(args.scenario, limit_flags(args))
    out = Path(args.out) if args.out else Path("out") / file_stem(scenario.name)
    prepare_output_dir(out)  # before the simulation: a bad --out costs nothing
    progress = not (args.quiet or args.json)
    if args.no_files:
        result = run_scenario(scenario, progress)
        written = [write_results(result, out)]
    else:  # each strategy's files are written while the next one simulates
        with FileWriter(out, args.trace == "all", progress) as files:
            result = run_scenario(scenario, progress, on_result=files.add)
            written = files.finish(result)
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
    print(f"wrote {len(written)} files to {out}/ ({describe(written)})")
    return 0
