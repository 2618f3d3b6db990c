"""NCCL's tree all-reduce: chains inside nodes, binary trees across them, pipelined.

A binomial tree (:mod:`.tree`) sends the whole array up and then down, one
round after another: ``2 lg p`` whole-array messages, fine for small messages
and slow for large ones. NCCL's tree (NVIDIA/nccl, ``src/graph/trees.cc`` and
``src/device/all_reduce.h``, ``runTreeUpDown``; Sanders, Speck and Traeff
2009, "Two-tree algorithms for full bandwidth broadcast, reduction and scan")
is built for bandwidth instead:

* **its shape**: inside a node the ranks form a *chain* (each sends to the
  one before it, the first is the node's *head*); the heads of the nodes form
  a binary tree. So the only messages that cross nodes are between heads, and
  each node sends and receives the array once in each direction;
* **two trees**: NCCL runs two complementary binary trees over the nodes,
  each with half the data, so that a node that is inside one tree is a leaf of
  the other (double binary tree). Here channel ``c`` uses the heap-ordered
  tree over the nodes for even ``c`` and its mirror image for odd ``c``, and
  like a ring's channels (:mod:`.layout`) each channel's chain starts at a
  different rank of the node, so that each channel crosses nodes through its
  own NIC;
* **pipelining**: the array is cut into ``K`` chunks; a chunk climbs to the
  root (summed at every rank, from the leaves up) while the next one climbs
  behind it, and as soon as the root has chunk ``k`` it sends it back down,
  so the reduction of later chunks and the broadcast of earlier ones run at
  the same time in opposite directions of every link.

In step ``t`` a rank at depth ``d`` (``D`` the largest) sends chunk ``t - (D -
d)`` up to its parent and chunk ``t - D - d`` down to its children. NCCL keeps
several slices in flight so that their latencies overlap; in the alpha-beta
model every message pays its own, so the chunks are as many as make the
pipeline fastest, ``K = sqrt((2D - 1) n beta / alpha)`` (the classic optimum
of a pipeline of ``2D`` hops; Sanders, Speck and Traeff 2009, sec. 2), capped so
that a plan stays a few hundred thousand messages
(:func:`simulator.comm.closed_forms.pipeline_chunks`).

The chunks going up and those coming down are separate *flows* of a channel
(:class:`~simulator.transfer.Round`): a chunk climbing never waits for one
descending. Both run in the channel's one thread block and share its
bandwidth: a channel of the tree moves half a ring channel's bytes each way,
the per-channel bandwidth NCCL's own tuner gives its tree (``perChMaxTreeBw``
in ``src/graph/tuning.cc``, about a ring channel's). On one switch the tree
is one chain of ``p`` ranks: the time is
:func:`simulator.comm.closed_forms.chain_all_reduce`. Across two
nodes the network carries the array once each way, against a ring's ``2 (p-1)/p``
times, which on two nodes whose network is the bottleneck lets the tree's
bus bandwidth exceed the network's (NCCL maintainers in NVIDIA/nccl issues
#812 and #946).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from ..hardware import LinkSpec
from ..ops.arrays import Array, split_bounds
from ..transfer import TransferPlan
from .builder import PlanBuilder
from .chunks import buffers, channel_pieces, flat_like, itemsize
from .closed_forms import pipeline_chunks
from .layout import _node_groups, _reference_links

#: Most messages a plan holds (fewer, larger chunks beyond).
MAX_MESSAGES = 400_000


def shape(nodes: Sequence[int], channel: int, channels: int) -> list[int]:
    """The parent of every rank in channel ``channel``'s tree (-1 for the root)."""
    groups = _node_groups(tuple(nodes))
    n = len(groups)
    chains = []
    for group in groups:
        k = len(group)
        first = channel * k // channels
        chains.append(group[first:] + group[:first])
    parent = [-1] * len(nodes)
    for chain in chains:
        for a, b in pairwise(chain):
            parent[b] = a
    # the heads: a heap-ordered binary tree over the nodes, mirrored on odd channels
    order = list(range(n)) if channel % 2 == 0 else list(range(n - 1, -1, -1))
    for i in range(1, n):
        parent[chains[order[i]][0]] = chains[order[(i - 1) // 2]][0]
    return parent


def depths(parent: Sequence[int]) -> list[int]:
    out = [-1] * len(parent)
    for r in range(len(parent)):
        chain, q = [], r
        while q != -1 and out[q] < 0:
            chain.append(q)
            q = parent[q]
        base = -1 if q == -1 else out[q]
        for i, x in enumerate(reversed(chain)):
            out[x] = base + 1 + i
    return out


def chunk_count(nbytes: int, depth: int, link: LinkSpec, channels: int, p: int) -> int:
    """How many chunks a channel's ``nbytes`` are cut into: the fastest pipeline of the
    ``2 depth`` hops up and down over ``link``, whose ports the two ways of every
    channel split, within :data:`MAX_MESSAGES`."""
    share = 2 * channels
    cap = max(1, MAX_MESSAGES // (2 * max(p - 1, 1) * channels))
    beta = share / link.effective_bandwidth
    return min(pipeline_chunks(2 * depth, nbytes, link.latency, beta), cap)


def all_reduce(
    xs: Sequence[Array], nodes: Sequence[int] | None = None, channels: int = 1,
    link: LinkSpec | None = None, chunks: int | None = None,
) -> tuple[list[Array], TransferPlan]:  # fmt: skip
    """Every rank ends with the elementwise sum (module docstring); ``nodes`` is the
    node of every rank (one node when ``None``); ``link``, the links the chunks are
    sized for (a DGX A100's NVLink when ``None``); ``chunks`` overrides the chunks
    per channel."""
    p = len(xs)
    nodes = tuple(nodes) if nodes is not None else (0,) * p
    builder = PlanBuilder("all_reduce", "tree", p, channels)
    item = itemsize(xs[0])
    pieces = channel_pieces([(0, xs[0].size)], channels)[0]  # channel c's range
    bufs = buffers(xs)
    for c in range(channels):
        lo, hi = pieces[c]
        parent = shape(nodes, c, channels)
        k = chunks
        if k is None:
            link = link or _reference_links()[0]
            k = chunk_count(item * (hi - lo), max(depths(parent)), link, channels, p)
        bounds = [(lo + a, lo + b) for a, b in split_bounds(hi - lo, k)]
        _channel(builder, parent, bounds, item, bufs, c)
    if bufs is None:
        return [flat_like(x, x.size).reshape(x.shape) for x in xs], builder.build()
    return [b.reshape(x.shape) for b, x in zip(bufs, xs, strict=True)], builder.build()


def _channel(
    builder: PlanBuilder, parent: list[int], bounds: list[tuple[int, int]], item: int,
    bufs: list[np.ndarray] | None, channel: int,
) -> None:  # fmt: skip
    """One channel's pipelined reduce up and broadcast down its tree."""
    p = len(parent)
    if p < 2:
        return
    depth = depths(parent)
    top = max(depth)
    k = len(bounds)
    sizes = [item * (hi - lo) for lo, hi in bounds]
    children: list[list[int]] = [[] for _ in range(p)]
    for r, q in enumerate(parent):
        if q >= 0:
            children[q].append(r)
    climbers = sorted((r for r in range(p) if parent[r] >= 0), key=lambda r: -depth[r])
    senders = sorted((r for r in range(p) if children[r]), key=lambda r: depth[r])
    for t in range(k + 2 * top):
        # down first (a flow of its own: a chunk going up never waits for one coming
        # down): a rank at depth d sends chunk t - top - d to each of its children; the
        # root, once that chunk came up (the up rounds of earlier steps)
        down = [(r, q, t - top - depth[r]) for r in senders for q in children[r]]
        down = [(a, b, j) for a, b, j in down if 0 <= j < k]
        for root in (False, True):
            mine = [(a, b, j) for a, b, j in down if (parent[a] < 0) == root]
            if mine:
                builder.round(t, [a for a, _, _ in mine], [b for _, b, _ in mine],
                              [sizes[j] for _, _, j in mine], channel=channel, flow=1,
                              after=(0,) if root else ())  # fmt: skip
        if bufs is not None:
            for a, b, j in down:
                lo, hi = bounds[j]
                bufs[b][lo:hi] = bufs[a][lo:hi]
        # up: a rank at depth d sends chunk t - (top - d), deepest first
        up = [(r, parent[r], t - (top - depth[r])) for r in climbers]
        up = [(a, b, j) for a, b, j in up if 0 <= j < k]
        if up:
            builder.round(t, [a for a, _, _ in up], [b for _, b, _ in up],
                          [sizes[j] for _, _, j in up], channel=channel)  # fmt: skip
            if bufs is not None:
                for a, b, j in up:
                    lo, hi = bounds[j]
                    bufs[b][lo:hi] += bufs[a][lo:hi]
