"""Ring algorithms: every rank talks only to its neighbours on a ring.

Ranks form a ring ``r -> r+1 (mod p)``. Every step, every rank sends one
message to its successor and receives one from its predecessor, so all ``p``
links of the ring are busy at once and no link carries more than one message
per step. That is what makes the ring *bandwidth-optimal* for all-reduce
(Patarasuk and Yuan 2009, "Bandwidth optimal all-reduce algorithms for
clusters of workstations", JPDC 69(2), sec. 3): it sends the minimum
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

Every message is ``n/p`` bytes and waits for the sender's previous receipt, so
in the alpha-beta model (Thakur, Rabenseifner and Gropp 2005, "Optimization of
collective communication operations in MPICH", IJHPCA 19(1), sections
"Allgather" and "Allreduce")::

    reduce-scatter = all-gather = (p-1) alpha + (p-1)/p n beta
    all-reduce                  = 2 (p-1) alpha + 2 (p-1)/p n beta

*Channels* (NCCL's word; :mod:`.layout`). With ``C`` channels every chunk is
cut into ``C`` pieces and channel ``c`` runs the algorithm above on the pieces
``c``, over its own ring order ``rings[c]``: the position a rank holds on the
ring decides which chunk it finishes, and chunk ``rings[c][i]`` is the one
position ``i`` finishes, so every rank still ends with its own chunk. Channels
never wait for each other; they share the ports they have in common
(:mod:`simulator.engine.network`), so on one switch ``C`` channels take the
time of one, each closed form holding per channel with ``n/C`` bytes over
ports ``C`` times slower, and across nodes they stripe the traffic over every
NIC.

Two more patterns live here because they are ring *shifts*: in a shift by
``k`` every rank ``r`` sends to ``r+k``. :func:`send_recv` is one shift by 1
(nccl-tests' ``sendrecv`` benchmark). :func:`all_to_all` is the shifts by
``1 .. p-1``, the pairwise exchange MPICH uses for long all-to-all messages
(Thakur et al. 2005, section "Alltoall"): step ``k`` delivers to every rank the
block that rank ``r-k`` holds for it, ``(p-1)(alpha + n/p beta)`` in all.

Sizes that do not divide by ``p`` split into chunks that differ by one element
(:func:`simulator.ops.arrays.split_bounds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ops.arrays import Array, concat, is_shape_only, split_bounds
from ..transfer import TransferPlan
from .builder import PlanBuilder, intern
from .chunks import (
    Bounds,
    Splits,
    buffers,
    channel_pieces,
    concat_bounds,
    exchange,
    flat_like,
    itemsize,
    ring_sizes,
)

Rings = Sequence[tuple[int, ...]]


def _rings(p: int, rings: Rings | None) -> list[tuple[int, ...]]:
    return list(rings) if rings else [tuple(range(p))]


def phase(
    builder: PlanBuilder,
    rings: Rings,
    pieces: list[Bounds],
    item: int,
    bufs: list[np.ndarray] | None,
    reduce: bool,
    first_step: int = 0,
) -> int:
    """``p-1`` ring steps on every channel: reduce-scatter (``reduce``) or all-gather.

    ``pieces[j][c]`` is the element range of channel ``c``'s piece of chunk
    ``j``; position ``i`` of ``rings[c]`` finishes (reduce-scatter) or starts
    with (all-gather) chunk ``rings[c][i]``. ``bufs`` are the ranks' flat
    buffers, updated in place (``None``: shape-only). Returns the next step.
    """
    p = len(rings[0])
    # every step of a channel repeats its ring and its sizes: build them once
    shapes = [(ring, ring[1:] + ring[:1], ring_sizes(pieces, ring, c, item)) for c, ring in
              enumerate(rings)]  # fmt: skip
    offset = 1 if reduce else 0
    for k in range(p - 1):
        for c, (ring, successors, sizes) in enumerate(shapes):
            builder.round(first_step + k, ring, successors, sizes, -(k + offset) % p, c)
            if bufs is None:
                continue
            # In place is safe: a rank never sends the chunk its predecessor writes.
            for i in range(p):
                lo, hi = pieces[ring[(i - k - offset) % p]][c]
                if reduce:
                    bufs[successors[i]][lo:hi] += bufs[ring[i]][lo:hi]
                else:
                    bufs[successors[i]][lo:hi] = bufs[ring[i]][lo:hi]
    return first_step + max(p - 1, 0)


def all_reduce(xs: Sequence[Array], rings: Rings | None = None) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with the elementwise sum (reduce-scatter, then all-gather)."""
    p, rings = len(xs), _rings(len(xs), rings)
    builder = PlanBuilder("all_reduce", "ring", p, len(rings))
    pieces = channel_pieces(split_bounds(xs[0].size, p), len(rings))
    bufs = buffers(xs)
    step = phase(builder, rings, pieces, itemsize(xs[0]), bufs, reduce=True)
    phase(builder, rings, pieces, itemsize(xs[0]), bufs, reduce=False, first_step=step)
    if bufs is None:
        return [flat_like(x, x.size).reshape(x.shape) for x in xs], builder.build()
    return [b.reshape(x.shape) for b, x in zip(bufs, xs, strict=True)], builder.build()


def reduce_scatter(
    xs: Sequence[Array], rings: Rings | None = None
) -> tuple[list[Array], TransferPlan]:
    """Rank ``r`` ends with chunk ``r`` of the flattened sum."""
    p, rings = len(xs), _rings(len(xs), rings)
    builder = PlanBuilder("reduce_scatter", "ring", p, len(rings))
    bounds = split_bounds(xs[0].size, p)
    bufs = buffers(xs)
    phase(builder, rings, channel_pieces(bounds, len(rings)), itemsize(xs[0]), bufs, reduce=True)
    if bufs is None:
        return [flat_like(xs[0], hi - lo) for lo, hi in bounds], builder.build()
    return [bufs[r][lo:hi].copy() for r, (lo, hi) in enumerate(bounds)], builder.build()


def all_gather(xs: Sequence[Array], rings: Rings | None = None) -> tuple[list[Array], TransferPlan]:
    """Every rank ends with the concatenation (along axis 0) of all ranks' pieces."""
    p, rings = len(xs), _rings(len(xs), rings)
    builder = PlanBuilder("all_gather", "ring", p, len(rings))
    bounds = concat_bounds([x.size for x in xs])
    bufs = None
    if has_numbers(xs):
        bufs = [np.zeros(bounds[-1][1], np.asarray(xs[0]).dtype) for _ in xs]
        for r, (lo, hi) in enumerate(bounds):
            bufs[r][lo:hi] = np.asarray(xs[r]).reshape(-1)
    phase(builder, rings, channel_pieces(bounds, len(rings)), itemsize(xs[0]), bufs, reduce=False)
    if bufs is None:
        return [concat(xs)] * p, builder.build()
    rows = sum(x.shape[0] for x in xs)
    return [b.reshape(rows, *xs[0].shape[1:]) for b in bufs], builder.build()


def has_numbers(xs: Sequence[Array]) -> bool:
    """Whether ``xs`` hold numbers to move (else only their shapes matter)."""
    return not is_shape_only(xs[0])


def send_recv(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Every rank sends its array to the next rank: rank ``r`` ends with ``xs[r-1]``."""
    p = len(xs)
    builder = PlanBuilder("send_recv", "ring", p)
    if p > 1:
        ranks = tuple(range(p))
        builder.round(0, ranks, ranks[1:] + ranks[:1], tuple(x.nbytes for x in xs), wait=False)
    return [xs[(r - 1) % p].copy() for r in range(p)], builder.build()


def shift(p: int, k: int, nbytes: int) -> TransferPlan:
    """The plan of every rank ``r`` sending ``nbytes`` to rank ``r + k`` (mod ``p``) at once:
    the step of a ring for ``k = 1`` (:func:`send_recv`), one shift of an all-to-all,
    one step of Transformer Engine's ring-exchange reduce-scatter
    (:mod:`simulator.parallel.tensor.pipelined`)."""
    builder = PlanBuilder("send_recv", "ring", p)
    ranks = tuple(range(p))
    builder.round(0, ranks, tuple((r + k) % p for r in ranks), (int(nbytes),), wait=False)
    return intern(builder.build(("shift", p, k % p, int(nbytes))))


def all_to_all(
    xs: Sequence[Array], splits: Splits | None = None
) -> tuple[list[Array], TransferPlan]:
    """Block ``j`` of rank ``i``'s array ends as block ``i`` of rank ``j``'s result: equal
    blocks of the flattened arrays, or blocks of ``splits[i][j]`` rows
    (:func:`~.chunks.exchange`). A block of no bytes is not sent."""
    p = len(xs)
    builder = PlanBuilder("all_to_all", "ring", p)
    sizes, results = exchange(xs, splits)
    for k in range(1, p):
        # Shift by k: rank r sends block r+k to rank r+k. No message depends on
        # another; the ports serialise the steps.
        sent = [(r, (r + k) % p, sizes[r][(r + k) % p]) for r in range(p)]
        sent = [m for m in sent if m[2]]
        if sent:
            src, dst, nbytes = zip(*sent, strict=True)
            uniform = len(set(nbytes)) == 1
            builder.round(k - 1, src, dst, nbytes[:1] if uniform else nbytes, wait=False)
    return results, builder.build()
