"""Hierarchical (two-level) all-reduce: inside each node, across nodes, inside again.

Links inside a node (NVLink through NVSwitch) are roughly ten times faster than
links between nodes (one InfiniBand port per GPU). A flat ring over several
nodes runs at the speed of its slowest hop, and pushes ``2 (p-1)/p n`` bytes
through it. The two-level algorithm sends only ``1/g`` of the data between
nodes, ``g`` being the devices per node:

1. reduce-scatter inside every node (a ring of its ``g`` ranks): local rank
   ``i`` ends with chunk ``i`` of the node's sum, ``n/g`` bytes;
2. all-reduce across nodes, one ring per local index ``i``: the ``N`` ranks
   with local index ``i`` (one per node) all-reduce their chunk ``i``. The
   ``g`` rings run side by side, each on its own devices' inter-node ports;
3. all-gather inside every node, so every rank ends with every chunk.

With ``alpha``/``beta`` of the intra-node (``_a``) and inter-node (``_e``)
links, phases 1 and 3 cost ``(g-1) alpha_a + (g-1)/g n beta_a`` each and phase
2 a ring all-reduce of ``n/g`` bytes over ``N`` ranks::

    2 (g-1) alpha_a + 2 (g-1)/g n beta_a + 2 (N-1) alpha_e + 2 (N-1)/N (n/g) beta_e

This is the "hierarchical all-reduce" of Jia et al. 2018 ("Highly scalable deep
learning training system with mixed-precision: training ImageNet in four
minutes") and of Horovod's ``HOROVOD_HIERARCHICAL_ALLREDUCE``. NCCL
splits the levels the same way for its trees: a chain inside each node and a
tree across nodes (Jeaugey 2019, "Massively scale your deep learning training
with NCCL 2.4", NVIDIA technical blog).

The algorithm needs to know which node each group rank sits on (``nodes``),
and the same number of ranks on every node, so that every local index has a
partner on every node.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..arrays import Array, concat, split
from ..errors import LayoutError
from ..transfer import TransferPlan
from .plan import PlanBuilder
from .ring import all_gather_steps, reduce_scatter_steps


def node_groups(nodes: Sequence[int] | None, p: int, op: str) -> list[list[int]]:
    """The group ranks on each node (nodes in order of first appearance).

    Raises :class:`LayoutError` unless ``nodes`` names a node for each of the
    ``p`` ranks and every node holds the same number of them.
    """
    if nodes is None or len(nodes) != p:
        got = "none" if nodes is None else f"{len(nodes)} entries"
        raise LayoutError(
            f"hierarchical {op} needs the node of each of its {p} ranks (nodes=[...]), "
            f"got {got}; pass nodes=[cluster.node_of(d) for d in devices]"
        )
    groups: dict[int, list[int]] = {}
    for rank, node in enumerate(nodes):
        groups.setdefault(node, []).append(rank)
    if len({len(g) for g in groups.values()}) > 1:
        raise LayoutError(
            f"hierarchical {op} needs the same number of ranks on every node, got "
            f"{', '.join(str(len(g)) for g in groups.values())} on nodes "
            f"{', '.join(str(n) for n in groups)}; use whole nodes or the ring algorithm"
        )
    return list(groups.values())


def all_reduce(
    xs: Sequence[Array], nodes: Sequence[int] | None = None
) -> tuple[list[Array], TransferPlan]:
    """Reduce-scatter in each node, all-reduce across nodes, all-gather in each node."""
    p = len(xs)
    local = node_groups(nodes, p, "all_reduce")
    g, n_nodes = len(local[0]), len(local)
    across_step, gather_step = g - 1, g - 1 + 2 * (n_nodes - 1)
    builder = PlanBuilder("all_reduce", "hierarchical", p)
    # chunks[r] is rank r's list of g chunks; the ring helpers update the lists in place.
    chunks = [split(x.reshape(-1), g) for x in xs]
    last: list[int | None] = [None] * p

    for members in local:
        reduce_scatter_steps(members, [chunks[r] for r in members], builder, last)
    for i in range(g):
        ring = [members[i] for members in local]
        pieces = [split(chunks[r][i], n_nodes) for r in ring]
        step = reduce_scatter_steps(ring, pieces, builder, last, across_step)
        all_gather_steps(ring, pieces, builder, last, step)
        for r, own in zip(ring, pieces, strict=True):
            chunks[r][i] = concat(own)
    for members in local:
        all_gather_steps(members, [chunks[r] for r in members], builder, last, gather_step)
    return [concat(c).reshape(x.shape) for c, x in zip(chunks, xs, strict=True)], builder.build()
