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
    them (see :mod:`simulator.parallel.tied`).
    """

    index: int
    entries: tuple[Entry, ...]
    tail: bool = False

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


def make_buckets(w: Worker, cap_mb: float, per_block: bool, tied: set[int]) -> list[Bucket]:
    """Buckets of worker ``w`` in the order their gradients become final.

    ``cap_mb = 0`` puts everything in one bucket unless ``per_block``, which
    makes one bucket per block (ZeRO-2 and 3 reduce block by block); otherwise
    buckets fill up to ``cap_mb`` MiB. Parameters whose ``id`` is in ``tied``
    get a tail bucket each.
    """
    order: list[tuple[int, int, list[Entry]]] = []
    tails: list[Entry] = []
    for c in sorted(w.chunks, reverse=True):
        blocks = w.chunks[c].blocks
        for b in reversed(range(len(blocks))):
            entries = []
            for i, p in enumerate(blocks[b].params(0)):
                (tails if id(p) in tied else entries).append((c, b, i))
            if entries:
                order.append((c, b, entries))
    groups: list[list[Entry]] = []
    if per_block:
        groups = [entries for _, _, entries in order]
    elif cap_mb == 0:
        groups = [[e for _, _, entries in order for e in entries]] if order else []
    else:
        current: list[Entry] = []
        size = 0
        for c, b, entries in order:
            current += entries
            size += sum(w.chunks[c].blocks[b].params(0)[i].nbytes for _, _, i in entries)
            if size >= cap_mb * MiB:
                groups.append(current)
                current, size = [], 0
        if current:
            groups.append(current)
    buckets = [Bucket(i, tuple(g)) for i, g in enumerate(groups)]
    return buckets + [Bucket(len(buckets) + k, (e,), tail=True) for k, e in enumerate(tails)]
