"""The device mesh: which device holds which (dp, cp, tp, pp) coordinates.

Ranks are laid out along named axes in an *order* that lists the axes from
fastest-varying to slowest, as Megatron-LM's ``RankGenerator`` does; its
default ``tp-cp-ep-dp-pp`` puts the ``t`` ranks of a tensor-parallel group on
consecutive devices -- inside one node whenever ``t`` divides the node size --
then the context-parallel ranks, whose attention exchanges keys and values
every layer, and pipeline stages furthest apart (Narayanan et al. 2021, sec.
3.3 explain why: tensor parallelism's all-reduces need the fastest links).
An order may leave ``cp`` out; it then comes right after ``tp``.

The axes are named, not numbered, so a new one joins by a size and a place
in :data:`AXES`: every group, coordinate and order works from them.

**Experts** (``ep``) are not an axis of their own: Megatron-Core carves the
expert-parallel groups out of the data-parallel ranks (``ep`` divides ``dp x
cp``; its ``RankGenerator`` lays out expert layers as ``tp-ep-dp-pp``). The
data ranks are numbered in the order's ``dp`` order; with ``ep`` before
``dp`` in the order (the default), ``ep`` consecutive data ranks form an
expert-parallel group, which shares out the experts and exchanges tokens, and
the data ranks ``ep`` apart that hold the same experts form an
*expert-data-parallel* group of ``dp / ep`` ranks, over which the experts'
gradients are reduced. With ``ep`` after ``dp`` the groups are the other way
round (an expert group of ranks ``dp / ep`` apart). Every device keeps its
place: ``ep`` regroups data ranks, it moves no device. Experts together with
context parallelism (``ep > 1`` and ``cp > 1``) are not built: the mesh
refuses them.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from ..errors import LayoutError
from ..hardware import ClusterSpec

AXES = ("tp", "cp", "ep", "dp", "pp")
DEFAULT_ORDER = "tp-cp-ep-dp-pp"
#: The axes that place devices, in the order coordinates and tables list them
#: (``ep`` regroups data ranks and places none).
LISTED = ("dp", "cp", "tp", "pp")
#: Why a strategy with both experts and context parallelism is refused, and the fix.
UNSUPPORTED_CP_EP = "ep > 1 with cp > 1 is not supported: set cp = 1 or ep = 1"


@functools.lru_cache(maxsize=64)
def parse_order(order: str) -> tuple[str, ...]:
    """``"tp-dp-pp"`` -> ``("tp", "cp", "ep", "dp", "pp")``: cp placed after tp and ep
    before dp when absent."""
    axes = tuple(a.strip() for a in order.split("-"))
    if "cp" not in axes:
        i = axes.index("tp") + 1 if "tp" in axes else 0
        axes = (*axes[:i], "cp", *axes[i:])
    if "ep" not in axes:
        i = axes.index("dp") if "dp" in axes else 0
        axes = (*axes[:i], "ep", *axes[i:])
    if sorted(axes) != sorted(AXES):
        raise LayoutError(
            f"order {order!r} must name each of tp, dp and pp once (cp and ep optional), "
            f"fastest first, e.g. 'tp-dp-pp' or 'tp-pp-dp'"
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
    ep: int = 1

    def __post_init__(self) -> None:
        for axis in (*LISTED, "ep"):
            if getattr(self, axis) < 1:
                raise LayoutError(f"{axis} must be at least 1, got {getattr(self, axis)}")
        parse_order(self.order)
        if self.ep > 1 and self.cp > 1:
            raise LayoutError(UNSUPPORTED_CP_EP)
        if self.data_ranks % self.ep:
            raise LayoutError(
                f"ep = {self.ep} does not divide the {self.data_ranks} data-parallel ranks "
                "it is carved out of; choose ep among the divisors of dp"
            )

    @property
    def data_ranks(self) -> int:
        """``dp``: the ranks that hold copies of the same (non-expert) weights and
        out of which the expert groups are carved (``cp`` stays 1 when ``ep > 1``)."""
        return self.dp

    @property
    def size(self) -> int:
        return self.dp * self.cp * self.tp * self.pp

    def _sizes(self) -> dict[str, int]:
        # ep regroups the data ranks and moves no device: size 1 for placement
        return {**{axis: getattr(self, axis) for axis in LISTED}, "ep": 1}

    @functools.cached_property
    def _strides(self) -> dict[str, int]:
        """How far apart two devices one rank apart on each axis are (the order's first
        axis is the fastest)."""
        sizes = self._sizes()
        strides, stride = {}, 1
        for axis in parse_order(self.order):
            strides[axis] = stride
            stride *= sizes[axis]
        return strides

    def device(self, dp: int = 0, tp: int = 0, pp: int = 0, cp: int = 0) -> int:
        """The device at coordinates ``(dp, cp, tp, pp)``."""
        st = self._strides
        return dp * st["dp"] + cp * st["cp"] + tp * st["tp"] + pp * st["pp"]

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

    def expert_coords(self, data_rank: int) -> tuple[int, int]:
        """The ``(ep, edp)`` ranks of data rank ``data_rank``: its place in its
        expert-parallel group and in its expert-data-parallel group (module docstring)."""
        axes = parse_order(self.order)
        edp = self.data_ranks // self.ep
        if axes.index("ep") < axes.index("dp"):
            return data_rank % self.ep, data_rank // self.ep
        return data_rank // edp, data_rank % edp

    def data_rank(self, ep: int, edp: int) -> int:
        """The data rank at expert coordinates ``(ep, edp)`` (inverse of :meth:`expert_coords`)."""
        axes = parse_order(self.order)
        if axes.index("ep") < axes.index("dp"):
            return edp * self.ep + ep
        return ep * (self.data_ranks // self.ep) + edp

    def ep_group(self, data_rank: int) -> list[int]:
        """The data ranks of ``data_rank``'s expert-parallel group, by ep rank."""
        _, edp = self.expert_coords(data_rank)
        return [self.data_rank(e, edp) for e in range(self.ep)]

    def edp_group(self, data_rank: int) -> list[int]:
        """The data ranks holding the same experts as ``data_rank``, by edp rank."""
        ep, _ = self.expert_coords(data_rank)
        return [self.data_rank(ep, d) for d in range(self.data_ranks // self.ep)]

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
    "ep": "a dispatch and a combine all-to-all per MoE layer, forward and backward",
    "edp": "one gradient all-reduce of the experts per step",
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
        lines += [_where(group, per_node) for group in sorted(mesh.groups(axis))]
    if mesh.ep > 1:
        for name, of in (("ep", mesh.ep_group), ("edp", mesh.edp_group)):
            lines += ["", f"{name} groups ({WHY[name]}):"]
            groups = {tuple(of(d)) for d in range(mesh.data_ranks)}
            if len(next(iter(groups))) == 1:
                lines.append("  none (size 1)")
                continue
            lines += [
                _where([mesh.device(dp=d, tp=t, pp=p) for d in ranks], per_node)
                for ranks in sorted(groups)
                for p in range(mesh.pp)
                for t in range(mesh.tp)
            ]
    return lines


def _where(group: list[int], per_node: int) -> str:
    nodes = sorted({d // per_node for d in group})
    link = (
        "inside node " + str(nodes[0])
        if len(nodes) == 1
        else f"across nodes {', '.join(map(str, nodes))} (network links)"
    )
    return f"  devices {group}: {link}"
