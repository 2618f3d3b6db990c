"""Recursive doubling and halving: ``lg p`` rounds of pairwise exchanges.

For a power-of-two group, pair every rank ``r`` with ``r XOR d`` for
``d = 1, 2, 4, ...`` (doubling) or ``d = p/2, p/4, ..., 1`` (halving). After
the rounds with all ``lg p`` distances, information from every rank has reached
every other rank through a butterfly, like the stages of an FFT. Both partners
send at once, in opposite directions of a full-duplex link, so a round costs
one message time. Sources: Thakur, Rabenseifner and Gropp 2005,
"Optimization of collective communication operations in MPICH", IJHPCA 19(1),
sections "Allgather", "Reduce-Scatter" and "Allreduce".

All-reduce by recursive doubling: in each round partners swap their *whole*
current partial sums and both add; after ``lg p`` rounds everyone has the
total. Latency-optimal, but every round moves all ``n`` bytes::

    all-reduce (doubling) = lg p (alpha + n beta)

Reduce-scatter by recursive halving: each rank starts responsible for all
``p`` chunks. In the round with distance ``d`` it keeps the half of its
current range that holds its own final chunk, sends the other half to its
partner (who keeps that half) and adds the partner's half in. The range
halves every round; after ``lg p`` rounds rank ``r`` holds the full sum of
chunk ``r``. All-gather by recursive doubling is the same butterfly backwards:
in the round with distance ``d`` a rank sends everything it has gathered so far
(``d`` pieces) to its partner. Messages shrink (or grow) geometrically, so the
bandwidth term sums to ``(1/2 + 1/4 + ...) n``::

    reduce-scatter (halving) = all-gather (doubling) = lg p alpha + (p-1)/p n beta

Rabenseifner's all-reduce is halving reduce-scatter followed by doubling
all-gather: the ring's bandwidth term with only ``2 lg p`` latencies
(Rabenseifner 2004, "Optimization of collective reduction operations", ICCS;
the MPICH default for long messages)::

    all-reduce (Rabenseifner) = 2 lg p alpha + 2 (p-1)/p n beta

A message waits for every earlier receipt of its sender: what it sends is a
sum or a collection of all of them. A window of chunks is one contiguous range
of the flat buffer, so every message copies or adds one range. Groups whose size is not a
power of two are rejected (MPICH first folds the extra ranks into a
power-of-two core; here ring or tree serve those sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import LayoutError
from ..ops.arrays import Array, concat, split_bounds
from ..transfer import TransferPlan
from .builder import PlanBuilder
from .chunks import Bounds, buffers, concat_bounds, flat_like, itemsize, window_bytes


def require_power_of_two(p: int, op: str, algorithm: str) -> None:
    """Raise :class:`LayoutError` unless ``p`` is 1, 2, 4, 8, ..."""
    if p < 1 or p & (p - 1):
        raise LayoutError(
            f"{algorithm} {op} needs a power-of-two group size (2, 4, 8, ...), got {p}; "
            f"use a power-of-two number of devices or the ring algorithm"
        )


def _doublings(p: int) -> list[int]:
    return [1 << k for k in range(p.bit_length() - 1)]


def _window(r: int, size: int) -> range:
    """The aligned block of ``size`` chunk indices that contains ``r``."""
    lo = r - r % size
    return range(lo, lo + size)


def _exchange_rounds(
    builder: PlanBuilder,
    p: int,
    distances: Sequence[int],
    send_bytes: Callable[[int, int], int],
    combine: Callable[[int], None] | None,
    first_step: int,
) -> int:
    """Round ``k``: rank ``r`` swaps with ``r ^ distances[k]``, sending
    ``send_bytes(r, d)``; ``combine(d)`` moves the data (numerics only)."""
    ranks = range(p)
    for k, d in enumerate(distances):
        sizes = [send_bytes(r, d) for r in ranks]
        builder.round(first_step + k, ranks, [r ^ d for r in ranks], sizes)
        if combine is not None:
            combine(d)
    return first_step + len(distances)


def _halving_reduce_scatter(
    builder: PlanBuilder, bounds: Bounds, item: int, bufs: list[np.ndarray] | None, first_step: int
) -> int:
    """Rank ``r`` ends with the sum of chunk ``r`` (of ``bounds``) in its buffer."""
    p = len(bounds)
    prefix = window_bytes(bounds, item)

    def send_bytes(r: int, d: int) -> int:
        # Before the round of distance d rank r covers the aligned block of 2d
        # chunks around r; it gives away the d chunks on its partner's side.
        w = _window(r ^ d, d)
        return prefix[w.stop] - prefix[w.start]

    def combine(d: int) -> None:
        # Rank r updates only its kept half, which its partner only reads.
        for r in range(p):
            w = _window(r, d)
            lo, hi = bounds[w.start][0], bounds[w.stop - 1][1]
            bufs[r][lo:hi] += bufs[r ^ d][lo:hi]

    return _exchange_rounds(
        builder, p, _doublings(p)[::-1], send_bytes, combine if bufs else None, first_step
    )


def _doubling_all_gather(
    builder: PlanBuilder, bounds: Bounds, item: int, bufs: list[np.ndarray] | None, first_step: int
) -> int:
    """Rank ``r`` starts with chunk ``r`` in its buffer and ends with every chunk."""
    p = len(bounds)
    prefix = window_bytes(bounds, item)

    def send_bytes(r: int, d: int) -> int:
        w = _window(r, d)
        return prefix[w.stop] - prefix[w.start]

    def combine(d: int) -> None:
        for r in range(p):
            w = _window(r ^ d, d)
            lo, hi = bounds[w.start][0], bounds[w.stop - 1][1]
            bufs[r][lo:hi] = bufs[r ^ d][lo:hi]

    return _exchange_rounds(
        builder, p, _doublings(p), send_bytes, combine if bufs else None, first_step
    )


def all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive doubling: ``lg p`` rounds of swapping and adding whole arrays."""
    p = len(xs)
    require_power_of_two(p, "all_reduce", "recursive")
    builder = PlanBuilder("all_reduce", "recursive", p)
    bufs = buffers(xs)

    def combine(d: int) -> None:
        # a + b == b + a exactly in floating point, so partners stay identical.
        bufs[:] = [bufs[r] + bufs[r ^ d] for r in range(p)]

    nbytes = xs[0].nbytes
    _exchange_rounds(builder, p, _doublings(p), lambda r, d: nbytes, combine if bufs else None, 0)
    if bufs is None:
        return [x.copy() for x in xs], builder.build()
    return [b.reshape(x.shape) for b, x in zip(bufs, xs, strict=True)], builder.build()


def reduce_scatter(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive halving: rank ``r`` ends with chunk ``r`` of the flattened sum."""
    p = len(xs)
    require_power_of_two(p, "reduce_scatter", "recursive")
    builder = PlanBuilder("reduce_scatter", "recursive", p)
    bounds = split_bounds(xs[0].size, p)
    bufs = buffers(xs)
    _halving_reduce_scatter(builder, bounds, itemsize(xs[0]), bufs, 0)
    if bufs is None:
        return [flat_like(xs[0], hi - lo) for lo, hi in bounds], builder.build()
    return [bufs[r][lo:hi].copy() for r, (lo, hi) in enumerate(bounds)], builder.build()


def all_gather(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive doubling: everyone ends with the concatenation of all pieces."""
    p = len(xs)
    require_power_of_two(p, "all_gather", "recursive")
    builder = PlanBuilder("all_gather", "recursive", p)
    bounds = concat_bounds([x.size for x in xs])
    bufs = _gather_buffers(xs, bounds)
    _doubling_all_gather(builder, bounds, itemsize(xs[0]), bufs, 0)
    if bufs is None:
        return [concat(xs)] * p, builder.build()
    rows = sum(x.shape[0] for x in xs)
    return [b.reshape(rows, *xs[0].shape[1:]) for b in bufs], builder.build()


def rabenseifner_all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive-halving reduce-scatter, then recursive-doubling all-gather."""
    p = len(xs)
    require_power_of_two(p, "all_reduce", "rabenseifner")
    builder = PlanBuilder("all_reduce", "rabenseifner", p)
    bounds = split_bounds(xs[0].size, p)
    bufs = buffers(xs)
    step = _halving_reduce_scatter(builder, bounds, itemsize(xs[0]), bufs, 0)
    _doubling_all_gather(builder, bounds, itemsize(xs[0]), bufs, step)
    if bufs is None:
        return [x.copy() for x in xs], builder.build()
    return [b.reshape(x.shape) for b, x in zip(bufs, xs, strict=True)], builder.build()


def _gather_buffers(xs: Sequence[Array], bounds: Bounds) -> list[np.ndarray] | None:
    """Buffers of the whole concatenation, each holding its own rank's piece."""
    own = buffers(xs)
    if own is None:
        return None
    out = [np.zeros(bounds[-1][1], own[0].dtype) for _ in xs]
    for r, (lo, hi) in enumerate(bounds):
        out[r][lo:hi] = own[r]
    return out
