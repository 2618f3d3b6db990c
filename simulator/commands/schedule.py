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
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from ..errors import ScheduleError
from ..parallel.pipeline import Schedule, get_schedule, load_csv, run, schedule_names, validate
from ..parallel.pipeline.schedules import BubbleFormula


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
    parser.add_argument("--stages", "-p", type=int, help="pipeline ranks P")
    parser.add_argument("--microbatches", "-m", type=int, help="micro-batches per step M")
    parser.add_argument("--chunks", "-v", type=int, help="model chunks per rank V (default 1)")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the schedule as CSV")
    parser.add_argument(
        "--validate", metavar="FILE.csv", help="check a hand-written schedule instead"
    )
    parser.add_argument(
        "--times",
        nargs=3,
        type=float,
        default=(1.0, 1.0, 1.0),
        metavar=("T_F", "T_B", "T_W"),
        help="durations of F, B and W on the printed timeline (default 1 1 1)",
    )
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.validate:
        schedule = _checked_file(args)
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
        schedule = info(args.stages, args.microbatches, args.chunks or 1)
        validate(schedule)
        title = f"{info.name}: {info.summary}"
        closed = info.bubble
    if args.csv:
        schedule.save_csv(args.csv)
    print(_report(schedule, title, args.times, closed))
    return 0


def _checked_file(args: argparse.Namespace) -> Schedule:
    schedule = load_csv(args.validate)
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
    return "\n\n".join(
        [
            f"{title}\n{p} ranks, {m} micro-batches, {v} chunk(s) per rank "
            f"({schedule.num_stages} stages)",
            "actions (rank x step):\n" + schedule.grid(),
            f"timeline (T_F = {t_f}, T_B = {t_b}, T_W = {t_w}, free communication; "
            "'-' continues an action):\n" + timeline.grid(),
            f"bubble on this timeline: {float(timeline.bubble_fraction()):.4f}; closed form: "
            + ("none" if analytic is None else f"{analytic:.4f}"),
            f"peak activation stashes in flight per rank (from F to its {release}): "
            + " ".join(str(n) for n in schedule.peak_in_flight()),
        ]
    )
