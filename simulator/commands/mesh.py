"""``python -m simulator mesh --dp D --cp C --tp T --pp P [--preset P] [--nodes N] [--order O]``.

Prints which device holds which (dp, cp, tp, pp) coordinates, and for every
process group of every axis the devices in it and the links its traffic
crosses: NVLink-class links inside a node, the network between nodes. With
Megatron-LM's default order ``tp-cp-dp-pp`` tensor-parallel groups stay inside
a node whenever ``tp`` divides the node size.

The sizes are checked like the keys of a scenario before anything is built:
positive integers, ``--nodes`` too (``--nodes 0`` is an error, not "as many
as needed"), and ``dp * cp * tp * pp`` within ``--max-devices``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..errors import LayoutError
from ..hardware import preset
from ..parallel.mesh import DEFAULT_ORDER, Mesh, describe
from ..ranges import Range
from ..scenario.limits import Limits, add_limit_flags, check_flag, int_flag, limit_flags

#: Allowed --dp, --tp, --pp (their product is limited by --max-devices).
SIZE = Range(lo=1, integer=True)
#: Allowed --nodes, as the scenario key ``[cluster] nodes``.
NODES = Range(lo=1, hi=1e9, integer=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mesh",
        help="show how dp x tp x pp ranks map onto devices and links",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dp", type=int_flag, default=1, help="data-parallel size (1)")
    p.add_argument("--cp", type=int_flag, default=1, help="context-parallel size (1)")
    p.add_argument("--tp", type=int_flag, default=1, help="tensor-parallel size (1)")
    p.add_argument("--pp", type=int_flag, default=1, help="pipeline-parallel size (1)")
    p.add_argument("--preset", default="dgx-a100", help="hardware preset (dgx-a100)")
    p.add_argument("--nodes", type=int_flag, help="nodes (default: as many as the mesh needs)")
    p.add_argument(
        "--order",
        default=DEFAULT_ORDER,
        help=f"axes from fastest to slowest varying ({DEFAULT_ORDER})",
    )
    add_limit_flags(p, "max_devices")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    limits = replace(Limits(), **limit_flags(args))
    for flag in ("dp", "cp", "tp", "pp"):
        check_flag(getattr(args, flag), f"--{flag}", SIZE)
    if args.nodes is not None:
        check_flag(args.nodes, "--nodes", NODES)
    size = args.dp * args.cp * args.tp * args.pp
    limits.check("max_devices", size, "--dp * --cp * --tp * --pp", table=False)
    mesh = Mesh(args.dp, args.tp, args.pp, args.order, cp=args.cp)
    per_node = preset(args.preset).devices_per_node
    nodes = args.nodes if args.nodes is not None else -(-mesh.size // per_node)
    cluster = preset(args.preset, nodes)
    if mesh.size > cluster.num_devices:
        raise LayoutError(
            f"dp*cp*tp*pp = {mesh.size} devices but {nodes} node(s) of {args.preset} "
            f"have {cluster.num_devices}; add --nodes or shrink the mesh"
        )
    print("\n".join(describe(mesh, cluster)))
    return 0
