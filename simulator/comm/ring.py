"""Ring algorithms (Patarasuk and Yuan 2009; NCCL's default for large messages).

All-reduce = reduce-scatter then all-gather around a ring of ``p`` ranks.
In reduce-scatter step ``k`` (``0 <= k < p-1``) rank ``r`` sends its partial
sum of chunk ``(r - k) mod p`` to rank ``r+1``, which adds its own chunk; after
``p-1`` steps rank ``r`` holds the full sum of chunk ``(r + 1) mod p``. The
all-gather then passes the finished chunks around the ring in ``p-1`` more
steps. Every step moves ``n/p`` bytes per rank, hence the alpha-beta time
``2(p-1) alpha + 2 (p-1)/p n beta`` (Thakur, Rabenseifner and Gropp 2005,
sec. 4). Sizes that do not divide by ``p`` split into chunks that differ by
one element.
"""

from __future__ import annotations

from ..arrays import Array, concat, split
from .plan import Plan, PlanBuilder


def _reduce_scatter_steps(
    chunks: list[list[Array]], builder: PlanBuilder, last: list[int | None]
) -> None:
    """In place: afterwards ``chunks[r][(r + 1) % p]`` is the full sum."""
    p = len(chunks)
    for k in range(p - 1):
        sends = []
        for r in range(p):
            c, dst = (r - k) % p, (r + 1) % p
            deps = [last[r]] if last[r] is not None else []
            sends.append((dst, c, chunks[r][c], builder.send(k, r, dst, chunks[r][c].nbytes, deps)))
        for dst, c, data, index in sends:
            chunks[dst][c] = chunks[dst][c] + data
            last[dst] = index


def _all_gather_steps(
    chunks: list[list[Array]],
    builder: PlanBuilder,
    last: list[int | None],
    first_step: int,
    owned: list[int],
) -> None:
    """In place: rank ``r`` starts owning chunk ``owned[r]`` and ends with all chunks."""
    p = len(chunks)
    for k in range(p - 1):
        sends = []
        for r in range(p):
            c, dst = (owned[r] - k) % p, (r + 1) % p
            deps = [last[r]] if last[r] is not None else []
            sends.append(
                (
                    dst,
                    c,
                    chunks[r][c],
                    builder.send(first_step + k, r, dst, chunks[r][c].nbytes, deps),
                )
            )
        for dst, c, data, index in sends:
            chunks[dst][c] = data
            last[dst] = index


def all_reduce(xs: list[Array]) -> tuple[list[Array], Plan]:
    """Ring all-reduce of 1-D arrays: every rank ends with the elementwise sum."""
    p = len(xs)
    builder = PlanBuilder("all_reduce", "ring", p)
    chunks = [split(x, p) for x in xs]
    last: list[int | None] = [None] * p
    _reduce_scatter_steps(chunks, builder, last)
    _all_gather_steps(chunks, builder, last, p - 1, [(r + 1) % p for r in range(p)])
    return [concat(c) if p > 1 else c[0] for c in chunks], builder.build()
