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

A message waits for every earlier receipt of its sender (its ``deps``): what
it sends is a sum or a collection of all of them. Groups whose size is not a
power of two are rejected (MPICH first folds the extra ranks into a
power-of-two core; here ring or tree serve those sizes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..arrays import Array, concat, split
from ..errors import LayoutError
from ..transfer import TransferPlan
from .plan import PlanBuilder


def require_power_of_two(p: int, op: str, algorithm: str) -> None:
    """Raise :class:`LayoutError` unless ``p`` is 1, 2, 4, 8, ..."""
    if p < 1 or p & (p - 1):
        raise LayoutError(
            f"{algorithm} {op} needs a power-of-two group size (2, 4, 8, ...), got {p}; "
            f"use a power-of-two number of devices or the ring algorithm"
        )


def _exchange_rounds(
    p: int,
    distances: Sequence[int],
    send_bytes: Callable[[int, int], int],
    combine: Callable[[int], None],
    builder: PlanBuilder,
    received: list[list[int]],
    first_step: int,
) -> int:
    """Run the rounds: in round ``k`` rank ``r`` swaps with ``r ^ distances[k]``.

    ``send_bytes(r, d)`` is what rank ``r`` sends in the round of distance
    ``d``; ``combine(d)`` applies that round's data movement to all ranks at
    once. Returns the next free step.
    """
    for k, d in enumerate(distances):
        # Snapshot the deps before any receipt of this round is recorded.
        arrivals = [
            (r ^ d, builder.send(first_step + k, r, r ^ d, send_bytes(r, d), received[r]))
            for r in range(p)
        ]
        combine(d)
        for dst, index in arrivals:
            received[dst].append(index)
    return first_step + len(distances)


def _doublings(p: int) -> list[int]:
    return [1 << k for k in range(p.bit_length() - 1)]


def _window(r: int, size: int) -> range:
    """The aligned block of ``size`` chunk indices that contains ``r``."""
    lo = r - r % size
    return range(lo, lo + size)


def _halving_reduce_scatter(
    chunks: list[list[Array]], builder: PlanBuilder, received: list[list[int]], first_step: int
) -> int:
    """In place: ``chunks[r][r]`` becomes the sum of chunk ``r`` over all ranks."""
    p = len(chunks)

    def sent_half(r: int, d: int) -> range:
        # Before the round of distance d rank r covers the aligned block of 2d
        # chunks around r; it gives away the d chunks on its partner's side.
        return _window(r ^ d, d)

    def send_bytes(r: int, d: int) -> int:
        return sum(chunks[r][c].nbytes for c in sent_half(r, d))

    def combine(d: int) -> None:
        # Rank r updates only its kept half, which its partner only reads.
        for r in range(p):
            for c in _window(r, d):
                chunks[r][c] = chunks[r][c] + chunks[r ^ d][c]

    return _exchange_rounds(
        p, _doublings(p)[::-1], send_bytes, combine, builder, received, first_step
    )


def _doubling_all_gather(
    chunks: list[list[Array | None]],
    builder: PlanBuilder,
    received: list[list[int]],
    first_step: int,
) -> int:
    """In place: rank ``r`` starts with ``chunks[r][r]`` and ends with every chunk."""
    p = len(chunks)

    def send_bytes(r: int, d: int) -> int:
        return sum(chunks[r][c].nbytes for c in _window(r, d))

    def combine(d: int) -> None:
        for r in range(p):
            for c in _window(r ^ d, d):
                chunks[r][c] = chunks[r ^ d][c]

    return _exchange_rounds(p, _doublings(p), send_bytes, combine, builder, received, first_step)


def all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive doubling: ``lg p`` rounds of swapping and adding whole arrays."""
    p = len(xs)
    require_power_of_two(p, "all_reduce", "recursive")
    builder = PlanBuilder("all_reduce", "recursive", p)
    data = [x.copy() for x in xs]

    def send_bytes(r: int, d: int) -> int:
        return data[r].nbytes

    def combine(d: int) -> None:
        # a + b == b + a exactly in floating point, so partners stay identical.
        data[:] = [data[r] + data[r ^ d] for r in range(p)]

    _exchange_rounds(p, _doublings(p), send_bytes, combine, builder, [[] for _ in xs], 0)
    return data, builder.build()


def reduce_scatter(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive halving: rank ``r`` ends with chunk ``r`` of the flattened sum."""
    p = len(xs)
    require_power_of_two(p, "reduce_scatter", "recursive")
    builder = PlanBuilder("reduce_scatter", "recursive", p)
    chunks = [split(x.reshape(-1), p) for x in xs]
    _halving_reduce_scatter(chunks, builder, [[] for _ in xs], 0)
    return [chunks[r][r].copy() for r in range(p)], builder.build()


def all_gather(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive doubling: everyone ends with the concatenation of all pieces."""
    p = len(xs)
    require_power_of_two(p, "all_gather", "recursive")
    builder = PlanBuilder("all_gather", "recursive", p)
    chunks: list[list[Array | None]] = [
        [x if c == r else None for c in range(p)] for r, x in enumerate(xs)
    ]
    _doubling_all_gather(chunks, builder, [[] for _ in xs], 0)
    return [concat(c) for c in chunks], builder.build()


def rabenseifner_all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Recursive-halving reduce-scatter, then recursive-doubling all-gather."""
    p = len(xs)
    require_power_of_two(p, "all_reduce", "rabenseifner")
    builder = PlanBuilder("all_reduce", "rabenseifner", p)
    chunks = [split(x.reshape(-1), p) for x in xs]
    received: list[list[int]] = [[] for _ in xs]
    step = _halving_reduce_scatter(chunks, builder, received, 0)
    _doubling_all_gather(chunks, builder, received, step)
    return [concat(c).reshape(x.shape) for c, x in zip(chunks, xs, strict=True)], builder.build()
