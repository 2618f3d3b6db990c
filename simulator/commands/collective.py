"""``python -m simulator collective``: time one collective, like nccl-tests.

Runs a collective on idle simulated devices for one message size or a sweep
of sizes (``--min-bytes``/``--max-bytes``/``--factor``, nccl-tests'
``-b``/``-e``/``-f``) and prints, per size, the simulated time, the algorithm
and bus bandwidths as nccl-tests defines them (NVIDIA/nccl-tests,
doc/PERFORMANCE.md), the algorithm that ran (``auto``, the default, picks it
per size as NCCL's tuner does) with its channels, and the alpha-beta closed
form when one applies.

The devices are ``0 .. devices-1`` of either a preset cluster (``--preset``,
default ``dgx-a100``, with as many nodes as the devices need unless
``--nodes`` says otherwise, and ``--nics`` NICs per node) or a single ideal
switch (``--bandwidth-gbs`` and ``--latency-us``; a missing one defaults to
100 GB/s or 5 us). Without any size option it sweeps 1 kB to 1 GB by factors
of 10.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from .. import comm
from ..comm import closed_forms
from ..errors import LayoutError, ScenarioError
from ..experiment.collective import predicted_time, run_collective
from ..hardware import GB, US, ClusterSpec, LinkSpec, preset, single_switch
from ..scenario.limits import int_flag, number_flag

DEFAULT_PRESET = "dgx-a100"
DEFAULT_BANDWIDTH_GBS = 100.0
DEFAULT_LATENCY_US = 5.0
DEFAULT_SWEEP = (1e3, 1e9, 10.0)
#: Limits that keep one command's time and memory bounded: a ring over p devices
#: books 2 (p-1) steps of p messages per channel (vectorised, but still p^2 numbers).
MAX_DEVICES = 4096
MAX_BYTES = 10**15  # 1 PB: beyond any real message, and exact in 64-bit integers
MAX_SIZES = 200  # sizes in one sweep
MAX_CHANNELS = 64  # NCCL's MAXCHANNELS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collective",
        help="time one collective on simulated links (like nccl-tests)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ops = ", ".join(f"{op} ({'/'.join(algs)})" for op, algs in comm.ALGORITHMS.items())
    parser.add_argument("--op", default="all_reduce", help=f"operation (algorithms): {ops}")
    parser.add_argument(
        "--algorithm", default=comm.AUTO, help="collective algorithm, or auto (default: auto)"
    )
    parser.add_argument("--devices", type=int_flag, default=8, help="group size (default 8)")
    parser.add_argument("--root", type=int_flag, default=0, help="root rank of rooted operations")
    parser.add_argument("--channels", type=int_flag, help="ring channels (default: one per NIC)")
    sizes = parser.add_argument_group("message sizes (bytes; 1e9 and 1000000000 both work)")
    sizes.add_argument("--bytes", help="one message size")
    sizes.add_argument("--min-bytes", help="smallest size of a sweep (nccl-tests -b)")
    sizes.add_argument("--max-bytes", help="largest size of a sweep (nccl-tests -e)")
    sizes.add_argument("--factor", help="size multiplier of a sweep (nccl-tests -f, default 2)")
    cluster = parser.add_argument_group("cluster: a preset, or one ideal switch")
    cluster.add_argument("--preset", help=f"cluster preset (default {DEFAULT_PRESET})")
    cluster.add_argument("--nodes", type=int_flag, help="nodes of the preset (default: as needed)")
    cluster.add_argument("--nics", type=int_flag, help="NICs per node (default: one per device)")
    cluster.add_argument("--bandwidth-gbs", type=number_flag, help="switch port bandwidth, GB/s")
    cluster.add_argument("--latency-us", type=number_flag, help="switch message latency, us")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def _number(text: str, flag: str, whole: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (whole and value != int(value)):
        kind = "a whole number of bytes" if whole else "a number"
        raise ScenarioError(f"{flag} must be {kind} >= 0 (e.g. 1e9), got {text!r}")
    if whole and value > MAX_BYTES:
        raise ScenarioError(f"{flag} must be at most {MAX_BYTES:.0e} bytes (1 PB), got {text}")
    return value


def message_sizes(args: argparse.Namespace) -> list[int]:
    """The sizes to run: ``--bytes``, a sweep, or the default sweep.

    A sweep multiplies by ``--factor`` from ``--min-bytes`` while the size stays
    within ``--max-bytes``; a missing end defaults to the other one.
    """
    if args.bytes is not None:
        if (args.min_bytes, args.max_bytes, args.factor) != (None, None, None):
            raise ScenarioError("give either --bytes or --min-bytes/--max-bytes/--factor, not both")
        return [int(_number(args.bytes, "--bytes"))]
    if args.min_bytes is None and args.max_bytes is None:
        if args.factor is not None:
            raise ScenarioError("--factor needs --min-bytes and --max-bytes to sweep between")
        low, high, factor = DEFAULT_SWEEP
    else:
        low = _number(args.min_bytes or args.max_bytes, "--min-bytes")
        high = _number(args.max_bytes or args.min_bytes, "--max-bytes")
        factor = _number(args.factor or "2", "--factor", whole=False)
    if low > high:
        raise ScenarioError(f"--min-bytes {low:g} is larger than --max-bytes {high:g}; swap them")
    if low == high:
        return [int(low)]
    if factor <= 1 or low == 0:
        raise ScenarioError("a sweep needs --factor > 1 and --min-bytes > 0 to grow to --max-bytes")
    count = math.floor(math.log(high / low) / math.log(factor) + 1e-9) + 1
    if count > MAX_SIZES:
        raise ScenarioError(
            f"the sweep would time {count} sizes, more than the limit of {MAX_SIZES}; "
            "use a larger --factor or a narrower range"
        )
    return [round(low * factor**k) for k in range(count)]


def _check_flags(args: argparse.Namespace) -> None:
    """Every integer flag in range, with a one-line error."""
    if not 2 <= args.devices <= MAX_DEVICES:
        raise LayoutError(
            f"--devices must be at least 2 for a collective and at most {MAX_DEVICES}, "
            f"got {args.devices}"
        )
    if not 0 <= args.root < args.devices:
        raise LayoutError(f"--root must be a rank of the group, 0 to {args.devices - 1}; "
                          f"got {args.root}")  # fmt: skip
    if args.channels is not None and not 1 <= args.channels <= MAX_CHANNELS:
        raise LayoutError(f"--channels must be 1 to {MAX_CHANNELS}, got {args.channels}")
    if args.nodes is not None and not 1 <= args.nodes <= MAX_DEVICES:
        raise LayoutError(f"--nodes must be 1 to {MAX_DEVICES}, got {args.nodes}")


def build_cluster(args: argparse.Namespace) -> ClusterSpec:
    """A single switch if a bandwidth or latency is given, else a preset."""
    if args.bandwidth_gbs is None and args.latency_us is None:
        name = args.preset or DEFAULT_PRESET
        per_node = preset(name).devices_per_node
        cluster = preset(name, args.nodes or max(1, math.ceil(args.devices / per_node)))
        return cluster if args.nics is None else cluster.with_nics(args.nics)
    if args.preset is not None or args.nodes is not None or args.nics is not None:
        raise ScenarioError(
            "--preset/--nodes/--nics and --bandwidth-gbs/--latency-us both describe the "
            "cluster; use one"
        )
    bandwidth = DEFAULT_BANDWIDTH_GBS if args.bandwidth_gbs is None else args.bandwidth_gbs
    latency = DEFAULT_LATENCY_US if args.latency_us is None else args.latency_us
    if not (math.isfinite(bandwidth) and bandwidth > 0) or not (
        math.isfinite(latency) and latency >= 0
    ):
        raise ScenarioError(
            f"--bandwidth-gbs must be finite and > 0 and --latency-us finite and >= 0, "
            f"got {bandwidth:g} and {latency:g}"
        )
    return single_switch(args.devices, bandwidth * GB, latency * US)


def describe(cluster: ClusterSpec) -> str:
    """One line: the nodes, NICs and the effective speed of both link classes."""

    def link(spec: LinkSpec) -> str:
        return f"{spec.effective_bandwidth / GB:g} GB/s, {spec.latency / US:g} us"

    if cluster.intra_node == cluster.inter_node and cluster.nodes == 1:
        return f"one switch, {cluster.num_devices} devices, {link(cluster.intra_node)} per port"
    return (
        f"{cluster.name}: {cluster.nodes} x {cluster.devices_per_node} {cluster.device.name}; "
        f"intra-node {link(cluster.intra_node)}; {cluster.nics} NICs per node, "
        f"{link(cluster.inter_node)} each"
    )


def run(args: argparse.Namespace) -> int:
    op, algorithm = args.op, args.algorithm
    comm.lookup(op, algorithm)
    _check_flags(args)
    sizes = message_sizes(args)
    cluster = build_cluster(args)
    rows: list[dict[str, Any]] = []
    for nbytes in sizes:
        timed = run_collective(
            op, algorithm, cluster, args.devices, nbytes, args.root, args.channels
        )
        rows.append(
            {
                "bytes": nbytes,
                "time_s": timed.seconds,
                "algbw_gbs": closed_forms.algbw(nbytes, timed.seconds) / GB,
                "busbw_gbs": closed_forms.busbw(op, args.devices, nbytes, timed.seconds) / GB,
                "algorithm": timed.algorithm,
                "channels": timed.channels,
            }
        )
    if args.json:
        doc = {"op": op, "algorithm": algorithm, "devices": args.devices, "results": rows}
        print(json.dumps(doc))
        return 0
    factor = closed_forms.bus_factor(op, args.devices)
    print(f"# {op}, algorithm {algorithm}, {args.devices} devices")
    print(f"# {describe(cluster)}")
    print(
        f"# busbw = algbw x {factor:g} (nccl-tests); ran = algorithm x channels; "
        "alpha-beta = closed form of the algorithm"
    )
    print(
        f"# {'bytes':>13} {'time (us)':>13} {'algbw (GB/s)':>13} {'busbw (GB/s)':>13} "
        f"{'ran':>16} {'alpha-beta (us)':>16}"
    )
    for row in rows:
        ran = row["algorithm"] + (f" x{row['channels']}" if row["channels"] > 1 else "")
        model = predicted_time(op, row["algorithm"], cluster, args.devices, row["bytes"])
        closed = "-" if model is None else f"{model / US:.3f}"
        print(
            f"  {row['bytes']:>13} {row['time_s'] / US:>13.3f} {row['algbw_gbs']:>13.2f} "
            f"{row['busbw_gbs']:>13.2f} {ran:>16} {closed:>16}"
        )
    return 0
