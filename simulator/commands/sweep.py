"""``python -m simulator sweep SCENARIO.toml --vary KEY=V1,V2 [--vary ...] [--zip]``.

Runs every strategy of a scenario at every point of a grid of values. KEY is
a dotted key of the scenario file (cluster.nodes,
cluster.inter_node.bandwidth_gbs, training.global_batch, model.layers, or
strategy.KEY for every strategy); values are comma-separated and read as in
TOML (8, 2.5, inf, true, or a word). The grid is every combination, or with
--zip the i-th values together. A [sweep] table in the scenario may give the
same: vary = {"cluster.nodes" = [8, 16]}, zip, metric; flags replace it.

Writes sweep.csv (one row per point and strategy), sweep.json and sweep.png
(--metric, default iteration_time_s, against the first varied key, one line
per strategy) into --out (default out/<scenario name>_sweep). --json prints
only {"points": [{"values": {...}, "results": [...]}]}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import ScenarioError
from ..planner import sweep
from ..planner.executor import default_workers
from ..planner.files import assignments
from ..scenario.limits import Limits, limit_flags
from ..scenario.paths import file_stem
from .plan import add_executor_flags, positive, stopped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a scenario over a grid of values",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", help="a scenario TOML file")
    p.add_argument(
        "--vary", metavar="KEY=V1,V2", action="append", default=[], help="a key and its values"
    )
    p.add_argument("--zip", action="store_true", help="pair the values instead of the product")
    p.add_argument("--metric", help="results key to plot (iteration_time_s)")
    add_executor_flags(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    limits = limit_flags(args)
    vary = assignments(args.vary, "--vary", Limits(**limits))
    workers = positive(args.workers, "--workers")
    started = time.perf_counter()
    result = sweep(
        Path(args.scenario),
        vary or None,
        zip=True if args.zip else None,
        metric=args.metric,
        workers=workers,
        dask=args.dask,
        progress=not args.quiet,
        limits=limits,
    )
    out = Path(args.out) if args.out else Path("out") / f"{file_stem(result.name)}_sweep"
    if result.interrupted and not result.finished:
        return stopped("runs", result.interrupted, 0, result.runs, None)
    written = result.write(out)
    if not result.count("ok") and not result.interrupted:
        first = next(r for rs in result.results for r in rs)
        raise ScenarioError(
            f"sweep {result.name!r}: none of its {result.runs} runs finished "
            f"({first['strategy']}: {first['status']}, {first.get('message') or 'no message'}); "
            f"wrote {', '.join(p.name for p in written)} to {out}/"
        )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(f"sweep {result.name!r} over {len(result.points)} points: {', '.join(result.keys)}")
        print(result.table())
        print(f"wrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
        where = "Dask" if args.dask else f"{workers or default_workers()} worker(s)"
        print(f"took {time.perf_counter() - started:.1f} s on {where}")
    if result.interrupted:
        return stopped("runs", result.interrupted, result.finished, result.runs, out)
    return 0
