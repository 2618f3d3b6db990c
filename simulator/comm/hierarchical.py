"""Hierarchical (two-level) all-reduce: inside each node, across nodes, inside again.

Links inside a node (NVLink through NVSwitch) are roughly ten times faster than
links between nodes (an InfiniBand NIC per GPU in a DGX). A flat ring of one
channel over several nodes runs at the speed of its slowest hop, and pushes
``2 (p-1)/p n`` bytes through it. The two-level algorithm sends only ``1/g``
of the data between nodes, ``g`` being the devices per node:

1. reduce-scatter inside every node (a ring of its ``g`` ranks): local rank
   ``i`` ends with chunk ``i`` of the node's sum, ``n/g`` bytes;
2. all-reduce across nodes, one ring per local index ``i``: the ``N`` ranks
   with local index ``i`` (one per node) all-reduce their chunk ``i``. The
   ``g`` rings run side by side, each through the NIC of its local index
   (rings whose ranks share a NIC take turns on it);
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
partner on every node. Each step of a phase is one round of the plan, with
the messages of every node (or of every cross-node ring) side by side.

Since the rings across nodes all run at once, each on the NIC of its local
index, the two-level algorithm already stripes over the NICs; NCCL's flat ring
with one channel per NIC (:mod:`.ring`, :mod:`.layout`) does the same and
moves less through NVLink, so for large messages across DGX nodes the ring
wins (the tuner, :mod:`.tuner`, compares them per message size).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import LayoutError
from ..ops.arrays import Array, split_bounds
from ..transfer import TransferPlan
from .builder import PlanBuilder
from .chunks import buffers, flat_like, itemsize


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


def _rings_side_by_side(
    builder: PlanBuilder,
    rings: list[list[int]],
    pieces: list[list[tuple[int, int]]],
    item: int,
    bufs: list[np.ndarray] | None,
    reduce: bool,
    first_step: int,
) -> int:
    """``q-1`` steps of equal rings of ``q`` ranks at once (:func:`.ring.phase` with the
    rings of one channel side by side): ring ``j`` position ``i`` finishes (or starts
    with) ``pieces[j][i]``. Returns the next step."""
    q = len(rings[0])
    src = tuple(r for ring in rings for r in ring)
    dst = tuple(ring[(i + 1) % q] for ring in rings for i in range(q))
    sizes_of = [tuple(item * (hi - lo) for lo, hi in ps) for ps in pieces]
    uniform = len({s for sizes in sizes_of for s in sizes}) == 1
    offset = 1 if reduce else 0
    for k in range(q - 1):
        if uniform:
            sizes: tuple[int, ...] = sizes_of[0][:1]
        else:
            sizes = tuple(s[(i - k - offset) % q] for s in sizes_of for i in range(q))
        builder.round(first_step + k, src, dst, sizes)
        if bufs is None:
            continue
        for ring, ps in zip(rings, pieces, strict=True):
            for i in range(q):
                lo, hi = ps[(i - k - offset) % q]
                if reduce:
                    bufs[ring[(i + 1) % q]][lo:hi] += bufs[ring[i]][lo:hi]
                else:
                    bufs[ring[(i + 1) % q]][lo:hi] = bufs[ring[i]][lo:hi]
    return first_step + max(q - 1, 0)


def all_reduce(
    xs: Sequence[Array], nodes: Sequence[int] | None = None
) -> tuple[list[Array], TransferPlan]:
    """Reduce-scatter in each node, all-reduce across nodes, all-gather in each node."""
    p = len(xs)
    local = node_groups(nodes, p, "all_reduce")
    g, n_nodes = len(local[0]), len(local)
    builder = PlanBuilder("all_reduce", "hierarchical", p)
    item, bufs = itemsize(xs[0]), buffers(xs)
    chunks = split_bounds(xs[0].size, g)  # local rank i finishes chunk i of its node's sum
    inner = [chunks] * n_nodes
    step = _rings_side_by_side(builder, local, inner, item, bufs, True, 0)
    across = [[members[i] for members in local] for i in range(g)]
    pieces = [[(lo + a, lo + b) for a, b in split_bounds(hi - lo, n_nodes)] for lo, hi in chunks]
    step = _rings_side_by_side(builder, across, pieces, item, bufs, True, step)
    step = _rings_side_by_side(builder, across, pieces, item, bufs, False, step)
    _rings_side_by_side(builder, local, inner, item, bufs, False, step)
    if bufs is None:
        return [flat_like(x, x.size).reshape(x.shape) for x in xs], builder.build()
    return [b.reshape(x.shape) for b, x in zip(bufs, xs, strict=True)], builder.build()
