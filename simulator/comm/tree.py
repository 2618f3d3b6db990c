"""Binomial-tree algorithms: broadcast and reduce in ``ceil(lg p)`` rounds.

Number the ranks relative to the root, ``v = (rank - root) mod p``.

Broadcast. In round ``k`` (``k = 0, 1, ...``) every rank that already has the
data (``v < 2^k``) sends it to ``v + 2^k``, if that rank exists. The set of
ranks holding the data doubles every round, so all ``p`` have it after
``ceil(lg p)`` rounds. For ``p = 8`` and root 0::

    round 0: 0->1
    round 1: 0->2, 1->3
    round 2: 0->4, 1->5, 2->6, 3->7

Reduce runs the same tree backwards: in round ``k`` every rank whose lowest set
bit of ``v`` is ``2^k`` sends its partial sum (its own data plus everything its
subtree sent it in earlier rounds) to ``v - 2^k``; the root ends with the sum.

Every message carries the whole array of ``n`` bytes, and the rounds run one
after the other, so (Thakur, Rabenseifner and Gropp 2005, "Optimization of
collective communication operations in MPICH", sections "Broadcast" and
"Reduce")::

    broadcast = reduce = ceil(lg p) (alpha + n beta)

Few latencies but ``lg p`` times the bandwidth term: the textbook tree MPICH
uses for short messages. The ``tree`` all-reduce is NCCL's instead, which
pipelines chunks through chains and two complementary binary trees to recover
the bandwidth (:mod:`.nccl_tree`).

A message waits for every receipt of its sender (``wait``): the data it
carries includes them all. Every message carries the whole array, so a round
of the tree is one round of the plan, and the plan of a tree over ``p`` ranks
holds ``p-1`` messages per phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ops.arrays import Array
from ..transfer import TransferPlan
from .builder import PlanBuilder
from .chunks import buffers


def reduce_rounds(
    builder: PlanBuilder,
    p: int,
    root: int,
    nbytes: int,
    bufs: list[np.ndarray] | None,
    first_step: int = 0,
) -> int:
    """The binomial reduce: ``bufs[root]`` becomes the sum of all buffers (in place).

    Returns the next free step.
    """
    step, mask = first_step, 1
    while mask < p:
        # exactly the v whose lowest set bit is ``mask`` send; their parents receive
        pairs = [((v + root) % p, (v - mask + root) % p) for v in range(mask, p, 2 * mask)]
        builder.round(step, [s for s, _ in pairs], [d for _, d in pairs], (nbytes,))
        if bufs is not None:
            for src, dst in pairs:  # a receiver never sends in the same round
                bufs[dst] += bufs[src]
        step, mask = step + 1, 2 * mask
    return step


def broadcast_rounds(
    builder: PlanBuilder,
    p: int,
    root: int,
    nbytes: int,
    bufs: list[np.ndarray | None] | None,
    first_step: int = 0,
) -> None:
    """The binomial broadcast: every entry of ``bufs`` becomes a copy of ``bufs[root]``."""
    step, mask = first_step, 1
    while mask < p:
        pairs = [((v + root) % p, (v + mask + root) % p) for v in range(min(mask, p - mask))]
        builder.round(step, [s for s, _ in pairs], [d for _, d in pairs], (nbytes,))
        if bufs is not None:
            for src, dst in pairs:
                bufs[dst] = bufs[src].copy()
        step, mask = step + 1, 2 * mask


def broadcast(xs: Sequence[Array], root: int = 0) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with a copy of ``xs[root]`` (the other entries are not read)."""
    p = len(xs)
    builder = PlanBuilder("broadcast", "tree", p)
    bufs = buffers([xs[root]])
    data: list = [None] * p
    if bufs is not None:
        data[root] = bufs[0]
    broadcast_rounds(builder, p, root, xs[root].nbytes, data if bufs is not None else None)
    shape = xs[root].shape
    if bufs is None:
        return [xs[root].copy() for _ in range(p)], builder.build()
    return [d.reshape(shape) for d in data], builder.build()


def reduce(xs: Sequence[Array], root: int = 0) -> tuple[list[Array | None], TransferPlan]:
    """The root ends with the elementwise sum; the other ranks' results are ``None``."""
    p = len(xs)
    builder = PlanBuilder("reduce", "tree", p)
    bufs = buffers(xs)
    reduce_rounds(builder, p, root, xs[0].nbytes, bufs)
    results: list[Array | None] = [None] * p
    results[root] = xs[root].copy() if bufs is None else bufs[root].reshape(xs[root].shape)
    return results, builder.build()
