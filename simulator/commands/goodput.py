"""``python -m simulator goodput --devices N --mtbf-hours H --checkpoint-s C --restart-s R``.

The expected fraction of wall time a job of N devices spends training, when
each device fails on average every H hours, a checkpoint takes C seconds and
a restart R seconds, and the optimal checkpoint interval from the Young/Daly
formula (see :mod:`simulator.experiment.goodput`). ``--interval-s T`` evaluates a given
interval instead. ``--json`` prints only
``{"goodput": ..., "interval_s": ..., "optimal_interval_s": ..., "optimal_goodput": ...}``.
"""

from __future__ import annotations

import argparse
import json

from ..experiment.goodput import HOUR, evaluate, job_mtbf
from ..ranges import Range
from ..scenario.limits import check_flag, int_flag, number_flag

#: The flags' allowed values, checked like scenario keys.
DEVICES = Range(lo=1, hi=1e9, integer=True)
HOURS = Range(lo=0, lo_open=True, hi=1e9)
SECONDS = Range(lo=0, lo_open=True, hi=1e9)
RESTART = Range(lo=0, hi=1e9)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "goodput",
        help="expected useful fraction of training time under failures; optimal checkpoint "
        "interval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--devices", type=int_flag, required=True, help="devices of the job N")
    p.add_argument(
        "--mtbf-hours",
        type=number_flag,
        required=True,
        help="mean time between failures of a device",
    )
    p.add_argument(
        "--checkpoint-s", type=number_flag, required=True, help="seconds to write a checkpoint"
    )
    p.add_argument(
        "--restart-s", type=number_flag, required=True, help="seconds to restart after a failure"
    )
    p.add_argument(
        "--interval-s",
        type=number_flag,
        help="seconds of training between checkpoints (default: optimal)",
    )
    p.add_argument("--json", action="store_true", help="print only the results JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    check_flag(args.devices, "--devices", DEVICES)
    check_flag(args.mtbf_hours, "--mtbf-hours", HOURS)
    check_flag(args.checkpoint_s, "--checkpoint-s", SECONDS)
    check_flag(args.restart_s, "--restart-s", RESTART)
    if args.interval_s is not None:
        check_flag(args.interval_s, "--interval-s", SECONDS)
    device_mtbf = args.mtbf_hours * HOUR
    result = evaluate(args.devices, device_mtbf, args.checkpoint_s, args.restart_s, args.interval_s)
    if args.json:
        print(json.dumps(vars(result)))
        return 0
    mtbf = job_mtbf(args.devices, device_mtbf)
    print(
        f"job: {args.devices:,} devices failing every {args.mtbf_hours:g} h each -> one "
        f"failure every {mtbf / HOUR:.4g} h ({mtbf:.4g} s)"
    )
    print(
        f"checkpoint every {result.interval_s:.4g} s of training: goodput "
        f"{result.goodput:.2%} (checkpoint {args.checkpoint_s:g} s, restart {args.restart_s:g} s)"
    )
    print(
        f"optimal interval (Young/Daly): {result.optimal_interval_s:.4g} s, goodput "
        f"{result.optimal_goodput:.2%}"
    )
    return 0
