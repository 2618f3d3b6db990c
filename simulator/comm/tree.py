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
    all-reduce (reduce to rank 0, then broadcast) = 2 ceil(lg p) (alpha + n beta)

Few latencies but ``lg p`` times the bandwidth term: trees win for small
messages, rings for large ones. (NCCL's trees are *double binary* trees, which
pipeline chunks through two complementary trees to recover the bandwidth;
Sanders, Speck and Traeff 2009, "Two-tree algorithms for full bandwidth
broadcast, reduction and scan", and the NCCL 2.4 release notes. The binomial
tree here is the textbook one MPICH uses for short messages.)

A message waits for every receipt of its sender in the same phase (``deps``):
the data it carries includes them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..arrays import Array
from ..transfer import TransferPlan
from .plan import PlanBuilder


def _reduce_steps(
    partial: list[Array], builder: PlanBuilder, root: int, first_step: int = 0
) -> tuple[list[int], int]:
    """In place: ``partial[root]`` becomes the sum of all entries.

    Returns the plan indices of the root's receipts and the next free step.
    """
    p = len(partial)
    received: list[list[int]] = [[] for _ in range(p)]
    step, mask = first_step, 1
    while mask < p:
        for v in range(mask, p, 2 * mask):  # exactly the v whose lowest set bit is ``mask``
            src, dst = (v + root) % p, (v - mask + root) % p
            index = builder.send(step, src, dst, partial[src].nbytes, received[src])
            partial[dst] = partial[dst] + partial[src]
            received[dst].append(index)
        step, mask = step + 1, 2 * mask
    return received[root], step


def _broadcast_steps(
    data: list[Array | None],
    builder: PlanBuilder,
    root: int,
    root_deps: Sequence[int] = (),
    first_step: int = 0,
) -> None:
    """In place: every entry of ``data`` becomes a copy of ``data[root]``.

    ``root_deps`` are the transfers the root's data waits for (the reduce
    phase of an all-reduce).
    """
    p = len(data)
    received: list[list[int]] = [[] for _ in range(p)]
    received[root] = list(root_deps)
    step, mask = first_step, 1
    while mask < p:
        for v in range(min(mask, p - mask)):
            src, dst = (v + root) % p, (v + mask + root) % p
            received[dst].append(builder.send(step, src, dst, data[src].nbytes, received[src]))
            data[dst] = data[src].copy()
        step, mask = step + 1, 2 * mask


def broadcast(xs: Sequence[Array], root: int = 0) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with a copy of ``xs[root]`` (the other entries are not read)."""
    p = len(xs)
    builder = PlanBuilder("broadcast", "tree", p)
    data: list[Array | None] = [None] * p
    data[root] = xs[root].copy()
    _broadcast_steps(data, builder, root)
    return data, builder.build()


def reduce(xs: Sequence[Array], root: int = 0) -> tuple[list[Array | None], TransferPlan]:
    """The root ends with the elementwise sum; the other ranks' results are ``None``."""
    p = len(xs)
    builder = PlanBuilder("reduce", "tree", p)
    partial = [x.copy() for x in xs]
    _reduce_steps(partial, builder, root)
    results: list[Array | None] = [None] * p
    results[root] = partial[root]
    return results, builder.build()


def all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Binomial reduce to rank 0, then binomial broadcast from rank 0."""
    p = len(xs)
    builder = PlanBuilder("all_reduce", "tree", p)
    partial = [x.copy() for x in xs]
    root_deps, step = _reduce_steps(partial, builder, 0)
    data: list[Array | None] = [partial[0]] + [None] * (p - 1)
    _broadcast_steps(data, builder, 0, root_deps, step)
    return data, builder.build()
