"""Gradient buckets: which parameters travel together, and when they are ready.

PyTorch DDP groups gradients into buckets of about ``bucket_cap_mb`` in the
*reverse* order of the parameters, because backward produces the last layer's
gradients first (Li et al. 2020, "PyTorch Distributed", VLDB, sec. 3.2.3);
each bucket's all-reduce starts as soon as all of its gradients are final, so
communication overlaps the rest of backward. Here a bucket lists parameters
by their place in the model: ``(chunk, block, position in the block's
parameters)``, the same on every tensor-parallel rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...nn.param import Param
from ..worker import Worker

MiB = 2**20  # PyTorch's bucket_cap_mb counts 2**20 bytes
Entry = tuple[int, int, int]  # (chunk, block, position)


@dataclass(frozen=True)
class Bucket:
    """Parameters whose gradients travel together.

    ``tail`` buckets hold tied weights whose two copies live on different
    workers; they travel at the end of the step, after nothing else can add to
    them (see :mod:`simulator.parallel.tied`). ``expert`` buckets hold experts'
    weights, which only some data ranks share: they travel in the
    expert-data-parallel group (:mod:`simulator.parallel.expert`).
    """

    index: int
    entries: tuple[Entry, ...]
    tail: bool = False
    expert: bool = False

    @property
    def blocks(self) -> set[tuple[int, int]]:
        return {(c, b) for c, b, _ in self.entries}

    def params(self, w: Worker, rank: int) -> list[Param]:
        out: list[Param] = []
        held: tuple[int, int] | None = None
        for c, b, i in self.entries:  # a block's entries are consecutive: list it once
            if (c, b) != held:
                held, params = (c, b), w.chunks[c].blocks[b].params(rank)
            out.append(params[i])
        return out


def make_buckets(
    w: Worker, cap_mb: float, per_block: bool, tied: set[int], experts: bool = False
) -> list[Bucket]:
    """Buckets of worker ``w`` in the order their gradients become final.

    ``cap_mb = 0`` puts everything in one bucket unless ``per_block``, which
    makes one bucket per block (ZeRO-2 and 3 reduce block by block); otherwise
    buckets fill up to ``cap_mb`` MiB. Parameters whose ``id`` is in ``tied``
    get a tail bucket each. With ``experts`` the experts' weights
    (:meth:`~simulator.parallel.tensor.ParallelBlock.expert_params`) fill buckets
    of their own, placed where their last gradient becomes final.
    """
    order: list[tuple[int, int, list[Entry], list[Entry]]] = []
    tails: list[Entry] = []
    for c in sorted(w.chunks, reverse=True):
        blocks = w.chunks[c].blocks
        for b in reversed(range(len(blocks))):
            own = {id(p) for p in blocks[b].expert_params(0)} if experts else set()
            entries: list[Entry] = []
            expert: list[Entry] = []
            for i, p in enumerate(blocks[b].params(0)):
                if id(p) in tied:
                    tails.append((c, b, i))
                else:
                    (expert if id(p) in own else entries).append((c, b, i))
            if entries or expert:
                order.append((c, b, entries, expert))
    groups: list[tuple[int, list[Entry], bool]] = []  # (ready at, entries, expert)
    for kind in (2, 3):
        stream = [(at, c, b, row[kind]) for at, row in enumerate(order) for c, b in [row[:2]]]
        groups += [(at, g, kind == 3) for at, g in _fill(w, stream, cap_mb, per_block)]
    groups.sort(key=lambda g: (g[0], g[2]))
    buckets = [Bucket(i, tuple(g), expert=x) for i, (_, g, x) in enumerate(groups)]
    return buckets + [Bucket(len(buckets) + k, (e,), tail=True) for k, e in enumerate(tails)]


def _fill(
    w: Worker, stream: list[tuple[int, int, int, list[Entry]]], cap_mb: float, per_block: bool
) -> list[tuple[int, list[Entry]]]:
    """The buckets of one stream of ``(position, chunk, block, entries)``, each with the
    position of the block that completes it."""
    stream = [row for row in stream if row[3]]
    if per_block:
        return [(at, entries) for at, _, _, entries in stream]
    if cap_mb == 0:
        return [(stream[-1][0], [e for *_, entries in stream for e in entries])] if stream else []
    groups: list[tuple[int, list[Entry]]] = []
    current: list[Entry] = []
    size = 0
    for at, c, b, entries in stream:
        current += entries
        size += sum(w.chunks[c].blocks[b].params(0)[i].nbytes for _, _, i in entries)
        if size >= cap_mb * MiB:
            groups.append((at, current))
            current, size = [], 0
    if current:
        groups.append((stream[-1][0], current))
    return groups
