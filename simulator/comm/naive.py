"""The parameter-server pattern: everything goes through one root rank.

The simplest way to combine data from ``p`` ranks: every rank sends what it
has to a root (rank 0 unless a root is given), the root computes the result,
and the root sends each rank what it needs. This is a parameter server with a
single server (Li et al. 2014, "Scaling distributed machine learning with the
parameter server", OSDI, shard the parameters over many servers to avoid
exactly this bottleneck), and it is the baseline every other algorithm here
improves on: all ``p-1`` messages of a phase queue on *one* port of the root,
so the time grows linearly with ``p`` while the other ranks' links sit idle.

Two phases, each a burst of ``p-1`` messages through the root's in-port
(gather) or out-port (scatter)::

    reduce, broadcast           (p-1) (alpha + n beta)
    scatter, gather             (p-1) (alpha + n/p beta)
    all-reduce                2 (p-1) (alpha + n beta)
    reduce-scatter, all-gather  (p-1) (alpha + n beta) + (p-1) (alpha + n/p beta)
    all-to-all                2 (p-1) (alpha + (p-1)/p n beta)

(``n`` is the whole array: the reduced array, the gathered array, or one
rank's all-to-all buffer.) In reduce-scatter the root gathers whole arrays and
returns one chunk to each rank; in all-gather it gathers chunks and returns
the whole array. Send order within a phase is by rank, which is the order the
root's port serves them in.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..ops.arrays import Array, concat, split
from ..transfer import TransferPlan
from .builder import PlanBuilder
from .chunks import Splits, exchange


def _gather(builder: PlanBuilder, sizes: Sequence[int], root: int, step: int) -> None:
    """Every rank but the root sends ``sizes[rank]`` bytes to the root."""
    others = [r for r in range(len(sizes)) if r != root]
    builder.round(step, others, [root] * len(others), [sizes[r] for r in others])


def _scatter(builder: PlanBuilder, sizes: Sequence[int], root: int, step: int) -> None:
    """The root sends ``sizes[rank]`` bytes to every other rank, once all it gathered
    has arrived."""
    others = [r for r in range(len(sizes)) if r != root]
    builder.round(step, [root] * len(others), others, [sizes[r] for r in others])


def _sum(xs: Sequence[Array], root: int) -> Array:
    """The root's sum: its own data first, then the others in rank order."""
    total = xs[root].copy()
    for r, x in enumerate(xs):
        if r != root:
            total = total + x
    return total


def broadcast(xs: Sequence[Array], root: int = 0) -> tuple[list[Array], TransferPlan]:
    """The root sends ``xs[root]`` to every rank in turn (the other entries are not read)."""
    p = len(xs)
    builder = PlanBuilder("broadcast", "naive", p)
    _scatter(builder, [xs[root].nbytes] * p, root, 0)
    return [xs[root].copy() for _ in range(p)], builder.build()


def reduce(xs: Sequence[Array], root: int = 0) -> tuple[list[Array | None], TransferPlan]:
    """Every rank sends its array to the root, which sums them; others get ``None``."""
    p = len(xs)
    builder = PlanBuilder("reduce", "naive", p)
    _gather(builder, [x.nbytes for x in xs], root, 0)
    results: list[Array | None] = [None] * p
    results[root] = _sum(xs, root)
    return results, builder.build()


def scatter(xs: Sequence[Array], root: int = 0) -> tuple[list[Array], TransferPlan]:
    """The root splits ``xs[root]`` along axis 0 and sends rank ``r`` piece ``r``
    (``torch.nn.DataParallel`` scatters its inputs this way)."""
    p = len(xs)
    builder = PlanBuilder("scatter", "naive", p)
    pieces = split(xs[root], p)
    _scatter(builder, [x.nbytes for x in pieces], root, 0)
    return [x.copy() for x in pieces], builder.build()


def gather(xs: Sequence[Array], root: int = 0) -> tuple[list[Array | None], TransferPlan]:
    """Every rank sends its array to the root, which concatenates them along axis 0;
    the other ranks get ``None``."""
    p = len(xs)
    builder = PlanBuilder("gather", "naive", p)
    _gather(builder, [x.nbytes for x in xs], root, 0)
    results: list[Array | None] = [None] * p
    results[root] = concat(xs)
    return results, builder.build()


def all_reduce(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Reduce to rank 0, which sends the sum back to everyone."""
    p = len(xs)
    builder = PlanBuilder("all_reduce", "naive", p)
    _gather(builder, [x.nbytes for x in xs], 0, 0)
    total = _sum(xs, 0)
    _scatter(builder, [total.nbytes] * p, 0, 1)
    return [total.copy() for _ in range(p)], builder.build()


def reduce_scatter(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Reduce whole arrays to rank 0, which sends rank ``r`` chunk ``r`` of the sum."""
    p = len(xs)
    builder = PlanBuilder("reduce_scatter", "naive", p)
    flat = [x.reshape(-1) for x in xs]
    _gather(builder, [x.nbytes for x in flat], 0, 0)
    chunks = split(_sum(flat, 0), p)
    _scatter(builder, [c.nbytes for c in chunks], 0, 1)
    return [c.copy() for c in chunks], builder.build()


def all_gather(xs: Sequence[Array]) -> tuple[list[Array], TransferPlan]:
    """Every rank sends its piece to rank 0, which sends the concatenation to everyone."""
    p = len(xs)
    builder = PlanBuilder("all_gather", "naive", p)
    _gather(builder, [x.nbytes for x in xs], 0, 0)
    whole = concat(xs)
    _scatter(builder, [whole.nbytes] * p, 0, 1)
    return [whole.copy() for _ in range(p)], builder.build()


def all_to_all(
    xs: Sequence[Array], splits: Splits | None = None
) -> tuple[list[Array], TransferPlan]:
    """Rank 0 relays: it collects every block meant for another rank, then delivers them
    (equal blocks, or blocks of ``splits[s][d]`` rows, :func:`~.chunks.exchange`)."""
    p = len(xs)
    builder = PlanBuilder("all_to_all", "naive", p)
    sizes, results = exchange(xs, splits)
    # Only the blocks that change hands travel: a rank keeps the one meant for itself,
    # and sends nothing when it has nothing for the others.
    up = [(s, sum(sizes[s]) - sizes[s][s]) for s in range(1, p)]
    down = [(d, sum(sizes[s][d] for s in range(p)) - sizes[d][d]) for d in range(1, p)]
    for step, (pairs, inward) in enumerate(((up, True), (down, False))):
        sent = [(r, n) for r, n in pairs if n]
        if sent:
            ranks = tuple(r for r, _ in sent)
            root = (0,) * len(sent)
            nbytes = tuple(n for _, n in sent)
            builder.round(step, *((ranks, root) if inward else (root, ranks)), nbytes)
    return results, builder.build()
