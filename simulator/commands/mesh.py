"""``python -m simulator mesh --dp D --tp T --pp P [--preset NAME] [--nodes N] [--order O]``.

Prints which device holds which (dp, tp, pp) coordinates, and for every
process group of every axis the devices in it and the links its traffic
crosses: NVLink-class links inside a node, the network between nodes. With
Megatron-LM's default order ``tp-cp-dp-pp`` tensor-parallel groups stay inside
a node whenever ``tp`` divides the node size.
"""

from __future__ import annotations

import argparse

from ..errors import LayoutError
from ..hardware import preset
from ..parallel.mesh import DEFAULT_ORDER, Mesh, describe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mesh",
        help="show how dp x tp x pp ranks map onto devices and links",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dp", type=int, default=1, help="data-parallel size (1)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel size (1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline-parallel size (1)")
    p.add_argument("--preset", default="dgx-a100", help="hardware preset (dgx-a100)")
    p.add_argument("--nodes", type=int, help="nodes (default: as many as the mesh needs)")
    p.add_argument(
        "--order",
        default=DEFAULT_ORDER,
        help=f"axes from fastest to slowest varying ({DEFAULT_ORDER})",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    mesh = Mesh(args.dp, args.tp, args.pp, args.order)
    per_node = preset(args.preset).devices_per_node
    nodes = args.nodes or -(-mesh.size // per_node)
    cluster = preset(args.preset, nodes)
    if mesh.size > cluster.num_devices:
        raise LayoutError(
            f"dp*tp*pp = {mesh.size} devices but {nodes} node(s) of {args.preset} "
            f"have {cluster.num_devices}; add --nodes or shrink the mesh"
        )
    print("\n".join(describe(mesh, cluster)))
    return 0
