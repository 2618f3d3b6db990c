"""The device mesh: which device holds which (dp, cp, tp, pp) coordinates.

Ranks are laid out along named axes in an *order* that lists the axes from
fastest-varying to slowest, as Megatron-LM's ``RankGenerator`` does; its
default ``tp-cp-dp-pp`` puts the ``t`` ranks of a tensor-parallel group on
consecutive devices -- inside one node whenever ``t`` divides the node size --
then the context-parallel ranks, whose attention exchanges keys and values
every layer, and pipeline stages furthest apart (Narayanan et al. 2021, sec.
3.3 explain why: tensor parallelism's all-reduces need the fastest links).
An order may leave ``cp`` out; it then comes right after ``tp``.

The axes are named, not numbered, so a new one joins by a size and a place
in :data:`AXES`: every group, coordinate and order works from them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..errors import LayoutError
from ..hardware import ClusterSpec

AXES = ("tp", "cp", "dp", "pp")
DEFAULT_ORDER = "tp-cp-dp-pp"
#: The axes in the order coordinates and tables list them.
LISTED = ("dp", "cp", "tp", "pp")


def parse_order(order: str) -> tuple[str, ...]:
    """``"tp-dp-pp"`` -> ``("tp", "cp", "dp", "pp")`` order with cp placed after tp if absent."""
    axes = tuple(a.strip() for a in order.split("-"))
    if "cp" not in axes:
        i = axes.index("tp") + 1 if "tp" in axes else 0
        axes = (*axes[:i], "cp", *axes[i:])
    if sorted(axes) != sorted(AXES):
        raise LayoutError(
            f"order {order!r} must name each of tp, dp and pp once (cp optional), fastest "
            f"first, e.g. 'tp-dp-pp' or 'tp-pp-dp'"
        )
    return axes


@dataclass(frozen=True)
class Mesh:
    """``dp x cp x tp x pp`` ranks mapped onto devices ``0 .. dp*cp*tp*pp - 1``."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    order: str = DEFAULT_ORDER
    cp: int = 1

    def __post_init__(self) -> None:
        for axis in LISTED:
            if getattr(self, axis) < 1:
                raise LayoutError(f"{axis} must be at least 1, got {getattr(self, axis)}")
        parse_order(self.order)

    @property
    def size(self) -> int:
        return self.dp * self.cp * self.tp * self.pp

    def _sizes(self) -> dict[str, int]:
        return {axis: getattr(self, axis) for axis in AXES}

    def device(self, dp: int = 0, tp: int = 0, pp: int = 0, cp: int = 0) -> int:
        """The device at coordinates ``(dp, cp, tp, pp)``."""
        coords = {"tp": tp, "cp": cp, "dp": dp, "pp": pp}
        sizes = self._sizes()
        index, stride = 0, 1
        for axis in parse_order(self.order):
            index += coords[axis] * stride
            stride *= sizes[axis]
        return index

    def coords(self, device: int) -> dict[str, int]:
        """Inverse of :meth:`device`."""
        sizes = self._sizes()
        out = {}
        for axis in parse_order(self.order):
            device, out[axis] = divmod(device, sizes[axis])
        return {a: out[a] for a in LISTED}

    def group(self, axis: str, **fixed: int) -> list[int]:
        """Devices along ``axis`` with the other coordinates fixed (default 0)."""
        size = self._sizes()[axis]
        return [self.device(**{**fixed, axis: i}) for i in range(size)]

    def groups(self, axis: str) -> list[list[int]]:
        """Every group along ``axis``; together they partition the devices."""
        others = [a for a in LISTED if a != axis]
        ranges = [range(self._sizes()[a]) for a in others]
        return [
            self.group(axis, **dict(zip(others, combo, strict=True)))
            for combo in itertools.product(*ranges)
        ]


WHY = {
    "tp": "two all-reduces per layer, forward and backward",
    "cp": "keys and values in every attention layer, forward and backward",
    "dp": "one gradient all-reduce per step",
    "pp": "one activation and one gradient per micro-batch",
}


def describe(mesh: Mesh, cluster: ClusterSpec) -> list[str]:
    """Which device holds which coordinates, and which links every group's traffic
    crosses (what ``python -m simulator mesh`` prints), one line per entry."""
    per_node = cluster.devices_per_node
    nodes = (
        f"{cluster.nodes} node(s) of {per_node} {cluster.device.name}"
        if cluster.homogeneous
        else f"nodes {cluster.describe()}"
    )
    # the context-parallel axis is listed when it has a size (older outputs stay as they were)
    axes = [a for a in LISTED if a != "cp" or mesh.cp > 1]
    sizes = " x ".join(str(getattr(mesh, a)) for a in axes)
    lines = [
        f"{sizes} ({' x '.join(axes)}) = {mesh.size} devices on {nodes}, order {mesh.order}",
        "",
        "device  node  " + "  ".join(f"{a:>2}" for a in axes),
    ]
    for d in range(mesh.size):
        c = mesh.coords(d)
        cells = "  ".join(f"{c[a]:>2}" for a in axes)
        lines.append(f"{d:>6}  {d // per_node:>4}  {cells}")
    for axis in [a for a in ("tp", "cp", "dp", "pp") if a in axes]:
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
