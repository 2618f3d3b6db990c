"""Tied weights that a pipeline splits: Megatron-LM's embedding group.

A GPT uses its token embedding twice: to look tokens up on the first stage
and to compute the logits on the last. When the pipeline puts the two ends on
different workers, each holds its own copy of the table; both copies must get
the *sum* of both uses' gradients before every update, so that they stay
equal (Shoeybi et al. 2019, sec. 3; Megatron-LM's ``_allreduce_embedding_grads``
all-reduces them over the group of the first and last pipeline stage). The
plan makes the copies (:func:`tie_copies`); at run time the data-parallel step
sums the gradients after the replicas have agreed
(:func:`simulator.runtime.data.tied.sync_tied`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..nn.param import Param
from .worker import Worker


@dataclass(frozen=True)
class TiedPair:
    """A parameter owned on worker ``owner`` and copied on worker ``user``.

    ``params`` holds ``(tp rank, owner's Param, user's copy)`` per shard.
    """

    owner: int
    user: int
    params: tuple[tuple[int, Param, Param], ...]

    def mine(self, w: Worker) -> list[tuple[int, Param]]:
        """This worker's side of the pair: ``(tp rank, Param)``."""
        side = 1 if w.index == self.owner else 2
        return [(entry[0], entry[side]) for entry in self.params]


def tie_copies(replica: list[Worker]) -> list[TiedPair]:
    """Give every borrowed parameter whose owner is another worker a copy of its own."""
    owner_of = {id(p): w for w in replica for r in range(len(w.devices)) for p in w.params(r)}
    copies: dict[tuple[int, int], list[tuple[int, Param, Param]]] = {}
    for w in replica:
        for chunk in w.chunks.values():
            for block in chunk.blocks:
                for r in range(block.ranks):
                    for p in block.borrowed(r):
                        owner = owner_of.get(id(p))
                        if owner is not None and owner is not w:
                            copy = block.own_copy(r, p)
                            copies.setdefault((owner.index, w.index), []).append((r, p, copy))
    return [TiedPair(o, u, tuple(ps)) for (o, u), ps in copies.items()]


def stage_copies(replica: list[Worker], half: int) -> list[TiedPair]:
    """DualPipe's copies: stage ``c + half`` holds a copy of stage ``c``'s blocks, on
    another worker, for the micro-batches that run the other way
    (:mod:`simulator.parallel.pipeline.dualpipe`). Both copies get the sum of their
    gradients before every update, as a tied weight's do, so they stay equal."""
    chunks = {c: w for w in replica for c in w.chunks}
    pairs = []
    for c in range(half):
        owner, user = chunks[c], chunks[c + half]
        mine, theirs = owner.chunks[c], user.chunks[c + half]
        params = tuple(
            (r, a, b)
            for r in range(len(owner.devices))
            for a, b in zip(mine.params(r), theirs.params(r), strict=True)
        )
        pairs.append(TiedPair(owner.index, user.index, params))
    return pairs
