"""Collectives as algorithms over point-to-point transfers (docs/design.md, key decision 5).

Each collective takes one array per group rank and returns one array per rank
plus the :class:`~simulator.transfer.TransferPlan` of messages it sent; the engine
times the plan on the links (:meth:`simulator.engine.Engine.collective`). The
arrays may be numpy arrays (the sums are real) or
:class:`~simulator.ops.arrays.ShapeArray` objects (only the sizes matter).

Operations (what every rank ends with, ``x_r`` being rank ``r``'s array):

* ``send_recv``: ``x_{r-1}`` (every rank sends to the next one on a ring);
* ``broadcast``: ``x_root``;
* ``reduce``: the root ``sum_r x_r``, every other rank ``None``;
* ``scatter``: piece ``r`` of ``x_root`` split along axis 0;
* ``gather``: the root the concatenation of all ``x_r``, every other rank ``None``;
* ``all_reduce``: ``sum_r x_r``;
* ``reduce_scatter``: chunk ``r`` of the flattened sum, chunks as
  :func:`simulator.ops.arrays.split_bounds` cuts it;
* ``all_gather``: the concatenation of all ``x_r`` along axis 0;
* ``all_to_all``: block ``r`` of every rank's flattened array, in rank order;
  with ``splits``, the blocks of ``splits[s][r]`` rows every rank ``s`` cuts
  from the top of its array, stacked in rank order (all-to-all-v, what a
  mixture of experts dispatches its tokens with).

Algorithms, one module each: ``ring`` (:mod:`.ring`), ``tree`` (binomial
broadcast and reduce, :mod:`.tree`; NCCL's pipelined tree all-reduce,
:mod:`.nccl_tree`), ``naive`` (parameter server, :mod:`.naive`), ``recursive``
(doubling/halving, power-of-two groups, :mod:`.recursive`), ``rabenseifner``
(halving then doubling, :mod:`.recursive`) and ``hierarchical`` (two-level,
:mod:`.hierarchical`). :data:`ALGORITHMS` lists which operation has which;
``auto``, the default, asks the tuner (:mod:`.tuner`) for the fastest one
for the operation, the message size and the group's layout, as NCCL does.

Where the ranks sit is a :class:`~.layout.GroupLayout`: pass ``layout=``, or
``nodes=`` (the node of every rank, links assumed), or run inside
:func:`~.layout.placed`; a group placed nowhere is taken to fill DGX A100
nodes in order. The ring runs one channel per NIC its group can use
across nodes (``channels=`` overrides that); :mod:`.closed_forms` holds the
alpha-beta formulas and nccl-tests' bandwidths. (Timing one collective on an
engine, nccl-tests style, is :mod:`simulator.experiment.collective`: the engine
and this package know nothing of each other.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import LayoutError
from ..ops.arrays import Array, ShapeArray
from ..transfer import Transfer, TransferPlan
from . import closed_forms, hierarchical, naive, nccl_tree, recursive, ring, tree, tuner
from .builder import PlanBuilder, intern
from .chunks import Splits, shape_key
from .layout import GroupLayout, channel_rings, current_layout, placed

Result = tuple[list, TransferPlan]

#: ``ALGORITHMS[op][algorithm]`` is the function that runs ``op`` with ``algorithm``.
ALGORITHMS: dict[str, dict[str, Callable[..., Result]]] = {
    "send_recv": {"ring": ring.send_recv},
    "broadcast": {"tree": tree.broadcast, "naive": naive.broadcast},
    "reduce": {"tree": tree.reduce, "naive": naive.reduce},
    "scatter": {"naive": naive.scatter},
    "gather": {"naive": naive.gather},
    "all_reduce": {
        "ring": ring.all_reduce,
        "tree": nccl_tree.all_reduce,
        "naive": naive.all_reduce,
        "recursive": recursive.all_reduce,
        "rabenseifner": recursive.rabenseifner_all_reduce,
        "hierarchical": hierarchical.all_reduce,
    },
    "reduce_scatter": {
        "ring": ring.reduce_scatter,
        "recursive": recursive.reduce_scatter,
        "naive": naive.reduce_scatter,
    },
    "all_gather": {
        "ring": ring.all_gather,
        "recursive": recursive.all_gather,
        "naive": naive.all_gather,
    },
    "all_to_all": {"ring": ring.all_to_all, "naive": naive.all_to_all},
}
OPS = tuple(ALGORITHMS)
#: The algorithm that lets the tuner choose.
AUTO = "auto"
#: Operations with a root rank.
ROOTED = ("broadcast", "reduce", "scatter", "gather")
#: Algorithms that take ``nodes``.
TOPOLOGY_AWARE = ("hierarchical",)
#: Algorithms that run several channels (each a ring or a tree over its own order), and
#: for which operations.
CHANNELED = {"ring": OPS, "tree": ("all_reduce",)}
#: Operations whose inputs must all have one shape (they add or swap elements).
_SAME_SHAPE = ("reduce", "all_reduce", "reduce_scatter", "all_to_all")
#: Operations whose ring is a shift, which has no channels.
_SHIFTS = ("send_recv", "all_to_all")


def lookup(op: str, algorithm: str) -> Callable[..., Result] | None:
    """The function for ``(op, algorithm)`` (``None`` for ``auto``); a one-line
    :class:`LayoutError` naming the choices otherwise."""
    if op not in ALGORITHMS:
        raise LayoutError(f"unknown collective {op!r}; choose one of: {', '.join(OPS)}")
    if algorithm == AUTO:
        return None
    if algorithm not in ALGORITHMS[op]:
        raise LayoutError(
            f"collective {op} has no algorithm {algorithm!r}; "
            f"choose one of: {', '.join([AUTO, *ALGORITHMS[op]])}"
        )
    return ALGORITHMS[op][algorithm]


def message_bytes(op: str, xs: Sequence[Array], root: int = 0) -> int:
    """The size nccl-tests reports for ``op`` (see :mod:`.closed_forms`): the whole
    array, the gathered result for (all-)gather, one rank's buffer for all-to-all
    and send/recv, the root's array for broadcast and scatter."""
    if op in ("all_gather", "gather"):
        return sum(x.nbytes for x in xs)
    if op in ("broadcast", "scatter"):
        return xs[root].nbytes
    return xs[0].nbytes


def resolve(
    op: str,
    xs: Sequence[Array],
    algorithm: str,
    layout: GroupLayout,
    root: int = 0,
    channels: int | None = None,
) -> tuple[str, int]:
    """The algorithm and channels a call runs.

    ``auto`` asks the tuner (with a ring of ``channels`` channels if given;
    an algorithm of one channel ignores them). A ring runs one channel per NIC
    its group can use unless ``channels`` says otherwise.
    """
    if channels is not None and (not isinstance(channels, int) or channels < 1):
        raise LayoutError(f"channels must be a whole number >= 1, got {channels!r}")
    channeled = op not in _SHIFTS and op in CHANNELED.get(algorithm, ())
    if algorithm == AUTO:
        choice = tuner.choose(op, message_bytes(op, xs, root), layout, channels)
        return choice.algorithm, choice.channels
    if not channeled:
        if channels not in (None, 1):
            raise LayoutError(f"{algorithm} {op} runs one channel, got channels = {channels}")
        return algorithm, 1
    return algorithm, channels or layout.max_channels()


def collective(
    op: str,
    xs: Sequence[Array],
    algorithm: str = AUTO,
    root: int = 0,
    nodes: Sequence[int] | None = None,
    layout: GroupLayout | None = None,
    channels: int | None = None,
    splits: Splits | None = None,
) -> Result:
    """Run collective ``op`` over ``xs`` (one array per rank) with ``algorithm``.

    ``root`` matters for rooted operations only; ``splits`` for all-to-all only
    (:func:`~.chunks.exchange`). Where the ranks sit comes from
    ``layout``, else from ``nodes`` (the node id of every rank), else from
    :func:`~.layout.placed`, else :meth:`GroupLayout.assumed`. Returns
    ``(results_per_rank, plan)``; the plan names the algorithm that ran
    (``auto`` resolved) and its channels.
    """
    lookup(op, algorithm)
    p = len(xs)
    _check(op, xs, root, nodes if layout is None else layout.nodes, splits)
    if splits is not None:
        splits = tuple(tuple(int(n) for n in row) for row in splits)
    if layout is None and nodes is not None:
        layout = GroupLayout.from_nodes(tuple(nodes))
    if layout is None:
        layout = current_layout(p) or GroupLayout.assumed(p)
    if xs and all(isinstance(x, ShapeArray) for x in xs):
        # shape-only: the result depends on the shapes alone, and both it and the
        # plan are immutable, so one run serves every repeat
        key = (op, algorithm, root, layout, channels, shape_key(xs), splits)
        if key not in _SHAPE_ONLY:
            _SHAPE_ONLY[key] = _run(op, xs, algorithm, root, layout, channels, splits)
        results, plan = _SHAPE_ONLY[key]
        # arrays of their own for every call, as with numbers: memory that saves the
        # results of two calls counts both
        return [None if r is None else r.fresh() for r in results], plan
    return _run(op, xs, algorithm, root, layout, channels, splits)


_SHAPE_ONLY: dict[tuple, Result] = {}


def _check(
    op: str,
    xs: Sequence[Array],
    root: int,
    nodes: Sequence[int] | None,
    splits: Splits | None = None,
) -> None:
    p = len(xs)
    if p < 1:
        raise LayoutError(f"collective {op} needs at least one rank, got none")
    if splits is not None:
        _check_splits(op, xs, splits)
    elif op in _SAME_SHAPE and len({tuple(x.shape) for x in xs}) > 1:
        raise LayoutError(
            f"collective {op} needs arrays of one shape on every rank, got "
            f"{', '.join(str(tuple(x.shape)) for x in xs)}"
        )
    if nodes is not None and len(nodes) != p:
        raise LayoutError(f"nodes names {len(nodes)} ranks but the group has {p}")
    if op in ROOTED and not 0 <= root < p:
        raise LayoutError(f"{op} root must be a rank of the group, 0 to {p - 1}; got {root}")


def _check_splits(op: str, xs: Sequence[Array], splits: Splits) -> None:
    """``splits`` is a ``p x p`` table of rows that add up to every rank's array."""
    p = len(xs)
    if op != "all_to_all":
        raise LayoutError(f"collective {op} takes no splits; only all_to_all does")
    if len(splits) != p or any(len(row) != p for row in splits):
        raise LayoutError(f"all_to_all splits must be {p} rows of {p} counts, one per rank pair")
    for s, (x, row) in enumerate(zip(xs, splits, strict=True)):
        if any(n < 0 for n in row) or sum(row) != x.shape[0]:
            raise LayoutError(
                f"all_to_all: rank {s} splits {x.shape[0]} rows into {list(row)}; the "
                "counts must be >= 0 and add up to its rows"
            )
    if len({(tuple(x.shape[1:]), x.dtype) for x in xs}) > 1:
        raise LayoutError("all_to_all with splits needs rows of one shape and dtype on every rank")


def _run(
    op: str,
    xs: Sequence[Array],
    algorithm: str,
    root: int,
    layout: GroupLayout,
    channels: int | None,
    splits: Splits | None = None,
) -> Result:
    p = len(xs)
    algorithm, channels = resolve(op, xs, algorithm, layout, root, channels)
    run = ALGORITHMS[op][algorithm]
    kwargs: dict = {}
    where: tuple = ()
    if op in ROOTED:
        kwargs["root"] = root
        where = (root,)
    if algorithm in TOPOLOGY_AWARE:
        kwargs["nodes"] = layout.nodes
        where = (kwargs["nodes"],)
    if algorithm == "tree" and op == "all_reduce":
        kwargs.update(nodes=layout.nodes, channels=channels, link=layout.intra)
        where = (layout.nodes,)
    elif algorithm == "ring" and op not in _SHIFTS:
        kwargs["rings"] = channel_rings(layout, p, channels)
        where = (tuple(kwargs["rings"]),)
    if splits is not None:
        kwargs["splits"] = splits
        where = (*where, splits)
    results, plan = run(xs, **kwargs)
    return results, intern(replace(plan, key=(op, algorithm, where, shape_key(xs))))


def send_recv(
    xs: Sequence[Array], algorithm: str = AUTO, nodes: Sequence[int] | None = None
) -> Result:
    """Every rank sends its array to the next one (ring shift)."""
    return collective("send_recv", xs, algorithm, nodes=nodes)


def broadcast(
    xs: Sequence[Array],
    root: int = 0,
    algorithm: str = AUTO,
    nodes: Sequence[int] | None = None,
) -> Result:
    """Every rank ends with a copy of ``xs[root]``."""
    return collective("broadcast", xs, algorithm, root, nodes)


def reduce(
    xs: Sequence[Array],
    root: int = 0,
    algorithm: str = AUTO,
    nodes: Sequence[int] | None = None,
) -> Result:
    """The root ends with the elementwise sum; other ranks get ``None``."""
    return collective("reduce", xs, algorithm, root, nodes)


def all_reduce(
    xs: Sequence[Array], algorithm: str = AUTO, nodes: Sequence[int] | None = None
) -> Result:
    """Every rank ends with the elementwise sum."""
    return collective("all_reduce", xs, algorithm, nodes=nodes)


def reduce_scatter(
    xs: Sequence[Array], algorithm: str = AUTO, nodes: Sequence[int] | None = None
) -> Result:
    """Rank ``r`` ends with chunk ``r`` of the flattened elementwise sum."""
    return collective("reduce_scatter", xs, algorithm, nodes=nodes)


def all_gather(
    xs: Sequence[Array], algorithm: str = AUTO, nodes: Sequence[int] | None = None
) -> Result:
    """Every rank ends with the concatenation of all ranks' arrays along axis 0."""
    return collective("all_gather", xs, algorithm, nodes=nodes)


def all_to_all(
    xs: Sequence[Array],
    algorithm: str = AUTO,
    nodes: Sequence[int] | None = None,
    splits: Splits | None = None,
) -> Result:
    """Rank ``r`` ends with block ``r`` of every rank's flattened array, in rank order;
    with ``splits``, the ``splits[s][r]`` rows every rank ``s`` has for it."""
    return collective("all_to_all", xs, algorithm, nodes=nodes, splits=splits)


__all__ = [
    "ALGORITHMS",
    "AUTO",
    "CHANNELED",
    "OPS",
    "ROOTED",
    "TOPOLOGY_AWARE",
    "GroupLayout",
    "PlanBuilder",
    "Transfer",
    "TransferPlan",
    "all_gather",
    "all_reduce",
    "all_to_all",
    "broadcast",
    "closed_forms",
    "collective",
    "lookup",
    "message_bytes",
    "placed",
    "reduce",
    "reduce_scatter",
    "send_recv",
    "tuner",
]
