"""``python -m simulator plan``: find the fastest dp x tp x pp layout.

Two forms:

    python -m simulator plan SCENARIO.toml [options]
    python -m simulator plan --model NAME [--preset P] [--nodes N] [--global-batch B] [options]

The first reads a plan scenario: a cluster, a model, training settings and a
[plan] table narrowing the search (no [[strategy]] tables). The second takes
a named model (gpt3-175b, megatron-145.6b, ...; see docs/planner.md) on a cluster
preset, shape-only, bf16, mixed-precision Adam, one step.

The planner enumerates every distinct layout (dp, tp, pp, micro-batch size,
schedule and chunks, recomputation, sequence parallelism, ZeRO stage, mesh
order), rejects the invalid ones with the checks `run` applies and those
whose memory estimate is over the device memory (printing how many each rule
removed), simulates the rest on local processes (--workers) or a Dask
cluster (--dask tcp://HOST:8786), and prints the fastest --top layouts.
It simulates them in the order of a lower bound on their step time (their
compute and their schedule's bubble) and skips those whose bound cannot make
the top K, counting them as pruned; --exhaustive simulates every one. The
search options are the keys of the [plan] table and override it; lists are
comma-separated:

  --max-tp 8 --schedules 1f1b,interleaved --recompute full --fixed tp=8

It writes plan.csv (and plan.parquet with pyarrow), plan.json, pareto.png
(step time against peak memory, the Pareto front, the device memory) and
best.toml (the best layouts as a scenario for `run`) into --out (default
out/<name>). --json prints only {"evaluated", "pruned", "layouts"}.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ScenarioError
from ..scenario.limits import Limits, add_limit_flags, limit_flags, limit_names

if TYPE_CHECKING:
    from ..planner.results import PlanResult

#: flag -> [plan] key, for the search options
SEARCH_FLAGS = {
    "devices": "devices",
    "max_tp": "max_tp",
    "max_pp": "max_pp",
    "max_cp": "max_cp",
    "context_parallel": "context_parallel",
    "max_chunks": "max_chunks",
    "schedules": "schedules",
    "microbatch_sizes": "microbatch_sizes",
    "recompute": "recompute",
    "sequence_parallel": "sequence_parallel",
    "zero": "zero",
    "orders": "orders",
    "ep": "ep",
    "top": "top",
}
LISTS = (
    "schedules",
    "microbatch_sizes",
    "recompute",
    "sequence_parallel",
    "zero",
    "orders",
    "context_parallel",
    "ep",
)


def add_executor_flags(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--workers``, ``--dask``, ``--json``, ``--quiet`` and the limits' ``--max-...``
    flags (plan and sweep)."""
    p.add_argument("--out", metavar="DIR", help="output folder (default: out/<name>)")
    p.add_argument("--workers", metavar="N", help="local worker processes (default: CPU count)")
    p.add_argument(
        "--dask", metavar="ADDRESS", help="run on a Dask scheduler, e.g. tcp://HOST:8786"
    )
    p.add_argument("--json", action="store_true", help="print only the results JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_limit_flags(p, *limit_names())


def stopped(what: str, interrupted: str, finished: int, total: int, out: Path | None) -> int:
    """Say on standard error what an interrupted plan or sweep kept and where, in one line;
    the exit status of the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    kept = f"wrote the {finished} that finished to {out}/" if out else "nothing was written"
    print(
        f"interrupted by {interrupted}: {finished} of {total} {what} finished; {kept}",
        file=sys.stderr,
    )
    from ..planner.executor import SIGNAL_EXIT

    return SIGNAL_EXIT[interrupted]


def positive(text: str | None, flag: str) -> int | None:
    """The integer value of a flag, or a one-line error."""
    if text is None:
        return None
    from ..planner.files import parse_value

    value = parse_value(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScenarioError(f"{flag} must be a positive integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="search every dp x tp x pp layout and rank the fastest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="?", help="a plan scenario TOML file")
    p.add_argument("--model", help="a named model, e.g. gpt3-175b (instead of a scenario)")
    p.add_argument("--preset", default="dgx-a100", help="cluster preset with --model (dgx-a100)")
    p.add_argument("--nodes", metavar="N", help="nodes with --model (default: the paper's)")
    p.add_argument("--global-batch", metavar="B", help="sequences per step with --model")
    p.add_argument("--steps", metavar="S", help="steps to simulate with --model (1)")
    search = p.add_argument_group("search (the keys of the [plan] table)")
    search.add_argument("--devices", metavar="N", help="dp*cp*tp*pp (default: every device)")
    search.add_argument("--max-tp", metavar="T", help="largest tensor-parallel size")
    search.add_argument("--max-pp", metavar="P", help="largest pipeline-parallel size")
    search.add_argument(
        "--max-cp", metavar="C", help="largest context-parallel size (1: no context parallelism)"
    )
    search.add_argument(
        "--context-parallel", metavar="A,B", help="ring,allgather,ulysses when cp > 1 (all)"
    )
    search.add_argument("--max-chunks", metavar="V", help="most chunks per rank (4)")
    search.add_argument("--schedules", metavar="A,B", help="pipeline schedules (all)")
    search.add_argument("--microbatch-sizes", metavar="B1,B2", help="micro-batch sizes (all)")
    search.add_argument("--recompute", metavar="R", help="none,selective,full (all)")
    search.add_argument("--sequence-parallel", metavar="S", help="false,true (both)")
    search.add_argument("--zero", metavar="Z", help="ZeRO stages (0,1,2,3)")
    search.add_argument("--orders", metavar="O", help="mesh orders, e.g. tp-dp-pp,tp-pp-dp")
    search.add_argument(
        "--ep", metavar="E", help="expert-parallel sizes (a mixture of experts: all that fit)"
    )
    search.add_argument(
        "--fixed", metavar="KEY=VALUE", action="append", default=[], help="hold a key fixed"
    )
    search.add_argument("--top", metavar="K", help="layouts to print and keep in best.toml (5)")
    search.add_argument(
        "--exhaustive",
        action="store_true",
        help="simulate every layout that may fit (default: skip those whose lower bound on "
        "the step cannot make the top K)",
    )
    add_executor_flags(p)
    p.set_defaults(handler=handle)


def search_options(args: argparse.Namespace, flags: dict[str, int] | None = None) -> dict:
    """The search flags as [plan] keys, checked by the [plan] table's schema."""
    from ..planner.files import assignments, parse_value, plan_settings

    limits = Limits(**(flags or {}))
    table = {}
    for flag, key in SEARCH_FLAGS.items():
        text = getattr(args, flag)
        if text is not None:
            if flag in LISTS:
                table[key] = [parse_value(v, limits) for v in text.split(",")]
            else:
                table[key] = parse_value(text, limits)
    fixed = {}
    for key, values in assignments(args.fixed, "--fixed", limits).items():
        if len(values) != 1:
            raise ScenarioError(f"--fixed holds one value per key, got {key}={values!r}")
        fixed[key] = values[0]
    if fixed:
        table["fixed"] = fixed
    settings, _ = plan_settings(table, "command line", "option")
    return settings


def handle(args: argparse.Namespace) -> int:
    # imported here, not when the command line is built (``--help`` stays quick)
    from ..hardware import preset as cluster_preset
    from ..parallel.training import TrainingConfig
    from ..planner import model_preset, plan
    from ..scenario.paths import file_stem
    from ..scenario.sizes import check_sizes

    limits = limit_flags(args)
    options = search_options(args, limits)
    top = options.pop("top", None)
    run = {
        "workers": positive(args.workers, "--workers"),
        "dask": args.dask,
        "progress": not args.quiet,
        "exhaustive": args.exhaustive,
        "limits": limits,
    }
    started = time.perf_counter()
    checked = Limits(**limits)  # the flags' own limits, checked here with the flags' names
    if "max_chunks" in options:
        checked.check("max_chunks_per_rank", options["max_chunks"], "--max-chunks")
    if "devices" in options:
        checked.check("max_devices", options["devices"], "--devices")
    if args.scenario and args.model:
        raise ScenarioError("give a plan scenario file or --model, not both")
    if args.scenario:
        result = plan(Path(args.scenario), top=top, **run, **options)
    elif args.model:
        mp = model_preset(args.model)
        per_node = cluster_preset(args.preset).devices_per_node
        nodes = positive(args.nodes, "--nodes") or math.ceil((mp.gpus or per_node) / per_node)
        checked.check("max_devices", nodes * per_node, f"--nodes {nodes} x {per_node} devices")
        cluster = cluster_preset(args.preset, nodes)
        training = TrainingConfig(
            numerics=False,
            global_batch=positive(args.global_batch, "--global-batch") or mp.global_batch,
            steps=positive(args.steps, "--steps") or 1,
            optimizer="adam",
        )
        check_sizes(checked, mp.config, training, [], f"--model {args.model}")
        name = f"plan-{args.model}-{args.preset}-{nodes}"
        result = plan(cluster, mp.config, training, top=top, name=name, **run, **options)
    else:
        raise ScenarioError("give a plan scenario file, or --model NAME (e.g. gpt3-175b)")
    out = Path(args.out) if args.out else Path("out") / file_stem(result.name)
    if not result.rows:
        if result.interrupted:
            return stopped("layouts", result.interrupted, 0, result.scheduled, None)
        if not result.enumerated:
            raise ScenarioError(
                f"plan {result.name!r}: nothing to simulate: no dp x tp x pp layout of "
                f"{result.devices} devices and a global batch of "
                f"{result.training.global_batch} matches the search; widen it (--fixed, "
                "--devices, --microbatch-sizes, --max-tp, --max-pp)"
            )
        rules = "; ".join(f"{n} {rule}" for rule, n in result.pruned.items())
        raise ScenarioError(
            f"plan {result.name!r}: nothing to simulate: all {result.enumerated} distinct "
            f"layouts were rejected before simulation ({rules}); widen the search"
        )
    written = result.write(out)
    finished = [r for r in result.rows if r["status"] in ("ok", "oom")]
    if not finished and not result.interrupted:
        raise ScenarioError(
            f"plan {result.name!r}: none of the {result.evaluated} simulated layouts "
            f"finished ({result.rows[0]['name']}: {result.rows[0]['message']}); wrote "
            f"{', '.join(p.name for p in written)} to {out}/"
        )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print(result, args, run, written, out, started)
    if result.interrupted:
        return stopped("layouts", result.interrupted, result.evaluated, result.scheduled, out)
    return 0


def _print(
    result: PlanResult,
    args: argparse.Namespace,
    run: dict,
    written: list,
    out: Path,
    started: float,
) -> None:
    from ..planner.executor import default_workers

    c = result.cluster
    print(
        f"plan {result.name!r} on {c.nodes} x {c.devices_per_node} {c.device.name} "
        f"({c.name}), global batch {result.training.global_batch}"
    )
    print(result.summary())
    print(result.table())
    print(f"(device memory: {c.device.memory_bytes / 2**30:.2f} GiB)")
    print(f"wrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
    workers = "Dask" if args.dask else f"{run['workers'] or default_workers()} worker(s)"
    print(f"took {time.perf_counter() - started:.1f} s on {workers}")
