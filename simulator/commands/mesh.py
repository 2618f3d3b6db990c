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
from ..parallel.mesh import DEFAULT_ORDER, Mesh

WHY = {
    "tp": "two all-reduces per layer, forward and backward",
    "dp": "one gradient all-reduce per step",
    "pp": "one activation and one gradient per micro-batch",
}


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


def describe(mesh: Mesh, cluster) -> list[str]:
    """The lines the command prints (also used by notebooks)."""
    per_node = cluster.devices_per_node
    lines = [
        f"{mesh.dp} x {mesh.tp} x {mesh.pp} (dp x tp x pp) = {mesh.size} devices on "
        f"{cluster.nodes} node(s) of {per_node} {cluster.device.name}, order {mesh.order}",
        "",
        "device  node  dp  tp  pp",
    ]
    for d in range(mesh.size):
        c = mesh.coords(d)
        lines.append(f"{d:>6}  {d // per_node:>4}  {c['dp']:>2}  {c['tp']:>2}  {c['pp']:>2}")
    for axis in ("tp", "dp", "pp"):
        size = getattr(mesh, axis)
        lines += ["", f"{axis} groups ({WHY[axis]}):"]
        if size == 1:
            lines.append("  none (size 1)")
            continue
        for group in sorted(mesh.groups(axis)):
            nodes = sorted({d // per_node for d in group})
            link = (
                "inside node " + str(nodes[0])
                if len(nodes) == 1
                else f"across nodes {', '.join(map(str, nodes))} (network links)"
            )
            lines.append(f"  devices {group}: {link}")
    return lines


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
