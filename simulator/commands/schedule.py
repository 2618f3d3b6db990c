"""python -m simulator schedule: print, export or check a pipeline schedule.

Two forms:

    python -m simulator schedule NAME --stages P --microbatches M [--chunks V]
                                 [--csv OUT.csv] [--times T_F T_B T_W]
    python -m simulator schedule --validate FILE.csv [--stages P]
                                 [--microbatches M] [--chunks V] [--times ...]

The first generates a registered schedule for P ranks (pipeline stages), M
micro-batches and V chunks per rank (default 1; zbv needs 2). The second
reads a schedule written by hand -- one CSV row per rank, one cell per step,
actions like 2F0 (stage 2, forward, micro-batch 0), 1B3, 0W2, empty cells for
idle steps -- and checks it, against the sizes given.

Both print the rank x step grid of actions; the schedule placed on a
unit-time timeline (every F, B and W takes one unit unless --times says
otherwise, a backward not split into B and W takes T_B + T_W, communication
is free); the bubble on that timeline next to the schedule's closed form; and
the peak number of activation stashes in flight per rank. A malformed
schedule is an "error:" naming the rank and the step, with exit status 2.

Sizes are checked before anything is built, like the keys of a scenario:
ranks, micro-batches and chunks are positive integers, times are in
[0.001, 1000], and P * V stages, M micro-batches and the P * V * M * 3
actions stay within the limits (``--max-stages``, ``--max-microbatches``,
``--max-events``). Grids too large to read are summarised, not printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from math import gcd, lcm
from pathlib import Path

from ..errors import ScheduleError
from ..parallel.pipeline import Schedule, get_schedule, parse_csv, run, schedule_names, validate
from ..parallel.pipeline.schedules import BubbleFormula
from ..ranges import Range
from ..scenario.limits import (
    Limits,
    add_limit_flags,
    check_flag,
    int_flag,
    limit_flags,
    number_flag,
)
from ..scenario.paths import read_text

#: Allowed values of --stages, --microbatches and --chunks (their limits apply on top).
COUNT = Range(lo=1, integer=True)
#: Allowed durations of --times: the timeline reads them to three decimals, so a
#: shorter one would round to nothing and its action would vanish from the grid.
DURATION = Range(lo=0.001, hi=1000)
#: Grids with more cells or columns than this are summarised: nobody reads them,
#: and printing them would take longer than computing them.
MAX_GRID_CELLS = 200_000
MAX_GRID_COLUMNS = 2_000
#: Limits the command checks (each with its --max-... flag).
LIMITS = ("max_stages", "max_microbatches", "max_events", "max_file_bytes")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="print, export (CSV) or check a pipeline schedule",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name", nargs="?", help=f"a registered schedule: {', '.join(schedule_names())}"
    )
    parser.add_argument("--stages", "-p", type=int_flag, help="pipeline ranks P")
    parser.add_argument("--microbatches", "-m", type=int_flag, help="micro-batches per step M")
    parser.add_argument("--chunks", "-v", type=int_flag, help="model chunks per rank V (default 1)")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the schedule as CSV")
    parser.add_argument(
        "--validate", metavar="FILE.csv", help="check a hand-written schedule instead"
    )
    parser.add_argument(
        "--times",
        nargs=3,
        type=number_flag,
        default=(1.0, 1.0, 1.0),
        metavar=("T_F", "T_B", "T_W"),
        help="durations of F, B and W on the printed timeline, each in [0.001, 1000] "
        "(default 1 1 1)",
    )
    add_limit_flags(parser, *LIMITS)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    limits = replace(Limits(), **limit_flags(args))
    _check_flags(args, limits)
    if args.validate:
        schedule = _checked_file(args, limits)
        title = f"{schedule.name}\nok: the schedule is complete and can run"
        closed = None
    else:
        if not args.name or args.stages is None or args.microbatches is None:
            raise ScheduleError(
                "name a schedule and give --stages and --microbatches, e.g. "
                "'schedule zb-h1 --stages 4 --microbatches 8', or check a file with "
                "'schedule --validate FILE.csv'"
            )
        info = get_schedule(args.name)
        chunks = 1 if args.chunks is None else args.chunks
        schedule = info(args.stages, args.microbatches, chunks)
        validate(schedule)
        title = f"{info.name}: {info.summary}"
        closed = info.bubble
    if args.csv:
        try:
            schedule.save_csv(args.csv)
        except OSError as err:
            raise ScheduleError(
                f"cannot write --csv {args.csv!r}: {err.strerror or err}; give a file in an "
                "existing folder"
            ) from None
    print(_report(schedule, title, args.times, closed))
    return 0


def _check_flags(args: argparse.Namespace, limits: Limits) -> None:
    """Ranges and limits of the flags, before any schedule is built (no flag is replaced
    by its default: ``-v 0`` is an error, not one chunk)."""
    for flag in ("stages", "microbatches", "chunks"):
        value = getattr(args, flag)
        if value is not None:
            check_flag(value, f"--{flag}", COUNT)
    for name, t in zip(("T_F", "T_B", "T_W"), args.times, strict=True):
        check_flag(t, f"--times {name}", DURATION)
    p, m = args.stages or 1, args.microbatches or 1
    v = 1 if args.chunks is None else args.chunks
    only = {"flag": True, "table": False}
    limits.check("max_stages", p, "--stages", **only)
    limits.check("max_stages", p * v, "--stages * --chunks", **only)
    limits.check("max_microbatches", m, "--microbatches", **only)
    limits.check(
        "max_events", 3 * p * v * m, "the actions, 3 * stages * chunks * microbatches", **only
    )
    if args.csv and not Path(args.csv).parent.is_dir():
        raise ScheduleError(
            f"cannot write --csv {args.csv!r}: the folder {str(Path(args.csv).parent)!r} "
            "does not exist; create it or give a file in an existing folder"
        )


def _checked_file(args: argparse.Namespace, limits: Limits) -> Schedule:
    path = Path(args.validate)
    text = read_text(path, "schedule file", limits, ScheduleError, table=False)
    schedule = parse_csv(text, name=f"file:{path.name}")
    if args.stages is not None and schedule.num_ranks != args.stages:
        raise ScheduleError(
            f"{schedule.name}: the file has {schedule.num_ranks} rank rows but --stages is "
            f"{args.stages}; write one row per rank"
        )
    stages = None
    if args.chunks is not None:
        stages = args.chunks * schedule.num_ranks
    validate(schedule, stages, args.microbatches)
    return schedule


def _report(
    schedule: Schedule, title: str, times: tuple[float, float, float], closed: BubbleFormula | None
) -> str:
    t_f, t_b, t_w = (Fraction(t).limit_denominator(1000) for t in times)
    timeline = run(schedule, t_f, t_b, t_w)
    p, m, v = schedule.num_ranks, schedule.microbatches, schedule.chunks_per_rank
    analytic = closed(p, m, v, float(t_f), float(t_b), float(t_w)) if closed else None
    release = "W" if schedule.split_backward else "BW"
    steps = max(len(row) for row in schedule.ranks)
    fused = () if schedule.split_backward else (t_b + t_w,)
    unit = _common_unit([t_f, t_b, t_w, *fused])
    span = max((row[-1].end for row in timeline.rows if row), default=0)
    columns = round(span / unit)
    return "\n\n".join(
        [
            f"{title}\n{p} ranks, {m} micro-batches, {v} chunk(s) per rank "
            f"({schedule.num_stages} stages)",
            "actions (rank x step):\n" + _grid_or_size(schedule.grid, p, steps),
            f"timeline (T_F = {t_f}, T_B = {t_b}, T_W = {t_w}, free communication; "
            "'-' continues an action):\n" + _grid_or_size(timeline.grid, p, columns),
            f"bubble on this timeline: {float(timeline.bubble_fraction()):.4f}; closed form: "
            + ("none" if analytic is None else f"{analytic:.4f}"),
            _stashes(schedule.peak_in_flight(), release, schedule.num_stages // p),
        ]
    )


def _stashes(peaks: list[int], release: str, chunks: int) -> str:
    """The peak stashes per rank; with several chunks per rank a stash is a chunk's,
    ``1/chunks`` of a stage's activations, so they are also given in stages' worth
    (interleaved's ``11 9 7 5`` is less memory than GPipe's ``8 8 8 8``)."""
    line = f"peak activation stashes in flight per rank (from F to its {release}): " + " ".join(
        map(str, peaks)
    )
    if chunks > 1:
        worth = " ".join(f"{n / chunks:g}" for n in peaks)
        line += f" (chunk stashes, each 1/{chunks} of a stage's: {worth} stages' worth)"
    return line


def _common_unit(durations: list[Fraction]) -> Fraction:
    """The largest time that divides every duration: one column of the timeline grid."""
    denominator = lcm(*(d.denominator for d in durations))
    return Fraction(
        gcd(*(d.numerator * (denominator // d.denominator) for d in durations)), denominator
    )


def _grid_or_size(grid: Callable[[], str], rows: int, columns: int) -> str:
    if rows * columns > MAX_GRID_CELLS or columns > MAX_GRID_COLUMNS:
        return (
            f"({rows:,} ranks x {columns:,} columns: too large to read, not printed; use "
            "fewer ranks or micro-batches, simpler --times, or --csv to save the schedule)"
        )
    return grid()
