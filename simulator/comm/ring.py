"""Ring algorithms: every rank talks only to its neighbours on a ring.

Ranks ``0 .. p-1`` form a ring ``r -> r+1 (mod p)``. Every step, every rank
sends one message to its successor and receives one from its predecessor, so
all ``p`` links of the ring are busy at once and no link carries more than one
message per step. That is what makes the ring *bandwidth-optimal* for
all-reduce (Patarasuk and Yuan 2009, "Bandwidth optimal all-reduce algorithms
for clusters of workstations", JPDC 69(2), sec. 3): it sends the minimum
``2 (p-1)/p n`` bytes per rank, at the price of ``p-1`` latencies per phase.
NCCL uses rings for large messages.

Reduce-scatter (``p-1`` steps). Split the array into ``p`` chunks. In step
``k`` rank ``r`` sends its partial sum of chunk ``(r - k - 1) mod p`` to rank
``r+1``, which adds its own copy of that chunk. A chunk thus travels around the
ring collecting one contribution per hop; after ``p-1`` hops rank ``r`` holds
the full sum of chunk ``r``. For ``p = 3`` (chunks ``a b c``, subscript = rank)::

    step 0: 0 -c0-> 1, 1 -a1-> 2, 2 -b2-> 0     now 0: b0+b2, 1: c0+c1, 2: a1+a2
    step 1: 0 -(b0+b2)-> 1, 1 -(c0+c1)-> 2, 2 -(a1+a2)-> 0
            rank 0 holds a, rank 1 holds b, rank 2 holds c (all three terms)

All-gather (``p-1`` steps). Rank ``r`` starts with finished chunk ``r``; in
step ``k`` it forwards chunk ``(r - k) mod p``, the one it received last, to
rank ``r+1``. All-reduce is reduce-scatter followed by all-gather.

Every message is ``n/p`` bytes and waits for the sender's previous receipt
(its ``deps``), so in the alpha-beta model (Thakur, Rabenseifner and Gropp
2005, "Optimization of collective communication operations in MPICH",
IJHPCA 19(1), sections "Allgather" and "Allreduce")::

    reduce-scatter = all-gather = (p-1) alpha + (p-1)/p n beta
    all-reduce                  = 2 (p-1) alpha + 2 (p-1)/p n beta

Two more patterns live here because they are ring *shifts*: in a shift by
``k`` every rank ``r`` sends to ``r+k``. :func:`send_recv` is one shift by 1
(nccl-tests' ``sendrecv`` benchmark). :func:`all_to_all` is the shifts by
``1 .. p-1``, the pairwise exchange MPICH uses for long all-to-all messages
(Thakur et al. 2005, section "Alltoall"): step ``k`` delivers to every rank the
block that rank ``r-k`` holds for it, ``(p-1)(alpha + n/p beta)`` in all.

Sizes that do not divide by ``p`` split into chunks that differ by one element
(:func:`simulator.arrays.split`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..arrays import Array, concat, split
from ..transfer import TransferPlan
from .plan import PlanBuilder


def reduce_scatter_steps(
    members: Sequence[int],
    chunks: list[list[Array]],
    builder: PlanBuilder,
    last: list[int | None],
    first_step: int = 0,
) -> int:
    """Ring reduce-scatter among the group ranks ``members``, in ring order.

    ``chunks[i]`` is member ``i``'s list of ``len(members)`` chunks; afterwards
    ``chunks[i][i]`` holds the sum of chunk ``i`` over all members. ``last``
    maps a group rank to the plan index of its latest receipt (``None`` before
    any), which every send waits for; it is updated in place so that a later
    phase can chain on. Returns the next free step index.
    """
    q = len(members)
    for k in range(q - 1):
        sends = []
        for i in range(q):
            c, j = (i - k - 1) % q, (i + 1) % q
            src = members[i]
            deps = () if last[src] is None else (last[src],)
            index = builder.send(first_step + k, src, members[j], chunks[i][c].nbytes, deps)
            sends.append((j, c, chunks[i][c], index))
        # Everyone sends before anyone adds: a step's messages are simultaneous.
        for j, c, data, index in sends:
            chunks[j][c] = chunks[j][c] + data
            last[members[j]] = index
    return first_step + max(q - 1, 0)


def all_gather_steps(
    members: Sequence[int],
    chunks: list[list[Array | None]],
    builder: PlanBuilder,
    last: list[int | None],
    first_step: int = 0,
) -> int:
    """Ring all-gather among ``members``: member ``i`` starts with ``chunks[i][i]``.

    Afterwards every member holds every chunk. ``last`` and the return value
    work as in :func:`reduce_scatter_steps`.
    """
    q = len(members)
    for k in range(q - 1):
        sends = []
        for i in range(q):
            c, j = (i - k) % q, (i + 1) % q
            src = members[i]
            deps = () if last[src] is None else (last[src],)
            index = builder.send(first_step + k, src, members[j], chunks[i][c].nbytes, deps)
            sends.append((j, c, chunks[i][c], index))
        for j, c, data, index in sends:
            chunks[j][c] = data
            last[members[j]] = index
    return first_step + max(q - 1, 0)


def all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with the elementwise sum (reduce-scatter, then all-gather)."""
    p = len(xs)
    builder = PlanBuilder("all_reduce", "ring", p)
    chunks = [split(x.reshape(-1), p) for x in xs]
    last: list[int | None] = [None] * p
    step = reduce_scatter_steps(range(p), chunks, builder, last)
    all_gather_steps(range(p), chunks, builder, last, step)
    return [concat(c).reshape(x.shape) for c, x in zip(chunks, xs, strict=True)], builder.build()


def reduce_scatter(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Rank ``r`` ends with chunk ``r`` of the flattened sum."""
    p = len(xs)
    builder = PlanBuilder("reduce_scatter", "ring", p)
    chunks = [split(x.reshape(-1), p) for x in xs]
    reduce_scatter_steps(range(p), chunks, builder, [None] * p)
    return [chunks[r][r].copy() for r in range(p)], builder.build()


def all_gather(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with the concatenation (along axis 0) of all ranks' pieces."""
    p = len(xs)
    builder = PlanBuilder("all_gather", "ring", p)
    chunks: list[list[Array | None]] = [
        [x if c == r else None for c in range(p)] for r, x in enumerate(xs)
    ]
    all_gather_steps(range(p), chunks, builder, [None] * p)
    return [concat(c) for c in chunks], builder.build()


def send_recv(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Every rank sends its array to the next rank: rank ``r`` ends with ``xs[r-1]``."""
    p = len(xs)
    builder = PlanBuilder("send_recv", "ring", p)
    if p > 1:
        for r, x in enumerate(xs):
            builder.send(0, r, (r + 1) % p, x.nbytes)
    return [xs[(r - 1) % p].copy() for r in range(p)], builder.build()


def all_to_all(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Block ``j`` of rank ``i``'s flattened array ends as block ``i`` of rank ``j``'s result."""
    p = len(xs)
    builder = PlanBuilder("all_to_all", "ring", p)
    blocks = [split(x.reshape(-1), p) for x in xs]
    for k in range(1, p):
        for r in range(p):
            # Shift by k: no message depends on another; the ports serialise the steps.
            builder.send(k - 1, r, (r + k) % p, blocks[r][(r + k) % p].nbytes)
    return [concat([blocks[s][r] for s in range(p)]) for r in range(p)], builder.build()
