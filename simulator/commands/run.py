"""``python -m simulator run SCENARIO.toml [--out DIR] [--json]``.

Checks every strategy, simulates each, prints the comparison table (or, with
``--json``, only the results JSON) and writes ``results.json`` and, per
strategy, ``<name>.gantt.png``, ``<name>.trace.json`` and
``<name>.memory.png`` (plus ``compare.png``) into ``--out`` (default
``out/<scenario name>``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..experiment import file_stem, run_scenario, write_outputs
from ..report import comparison_table
from ..scenario import load_scenario


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
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    result = run_scenario(scenario)
    out = Path(args.out) if args.out else Path("out") / file_stem(scenario.name)
    written = write_outputs(result, out)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(
        f"scenario {scenario.name!r} on {scenario.cluster.nodes} x "
        f"{scenario.cluster.devices_per_node} {scenario.cluster.device.name} "
        f"({scenario.cluster.name})"
    )
    print(
        comparison_table([r.metrics for r in result.results], scenario.cluster.device.memory_bytes)
    )
    for r in result.results:
        if r.status != "ok":
            print(f"{r.name}: {r.metrics['message']}")
    print(
        f"wrote {len(written)} files to {out}/ (results.json, *.gantt.png, *.trace.json, "
        f"*.memory.png{', compare.png' if len(result.results) > 1 else ''})"
    )
    return 0
