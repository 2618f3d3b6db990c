"""Collectives as algorithms over point-to-point transfers (DESIGN.md, key decision 5).

Each collective takes one array per group rank and returns one array per rank
plus the :class:`~simulator.transfer.TransferPlan` of messages it sent; the engine
times the plan on the links (:meth:`simulator.engine.Engine.collective`). The
arrays may be numpy arrays (the sums are real) or
:class:`~simulator.arrays.ShapeArray` objects (only the sizes matter).

Operations (what every rank ends with, ``x_r`` being rank ``r``'s array):

* ``send_recv``: ``x_{r-1}`` (every rank sends to the next one on a ring);
* ``broadcast``: ``x_root``;
* ``reduce``: the root ``sum_r x_r``, every other rank ``None``;
* ``scatter``: piece ``r`` of ``x_root`` split along axis 0;
* ``gather``: the root the concatenation of all ``x_r``, every other rank ``None``;
* ``all_reduce``: ``sum_r x_r``;
* ``reduce_scatter``: chunk ``r`` of the flattened sum, chunks as
  :func:`simulator.arrays.split_bounds` cuts it;
* ``all_gather``: the concatenation of all ``x_r`` along axis 0;
* ``all_to_all``: block ``r`` of every rank's flattened array, in rank order.

Algorithms, one module each: ``ring`` (:mod:`.ring`), ``tree`` (binomial,
:mod:`.tree`), ``naive`` (parameter server, :mod:`.naive`), ``recursive``
(doubling/halving, power-of-two groups, :mod:`.recursive`), ``rabenseifner``
(halving then doubling, :mod:`.recursive`) and ``hierarchical`` (two-level,
:mod:`.hierarchical`). :data:`ALGORITHMS` lists which operation has which.
Algorithms that exploit the topology read ``nodes``, the node of every group
rank; the others ignore it. :mod:`.closed_forms` holds the alpha-beta formulas
and nccl-tests' bandwidths, :mod:`.timing` times one collective on idle links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..arrays import Array, ShapeArray
from ..errors import LayoutError
from ..transfer import Transfer, TransferPlan
from . import closed_forms, hierarchical, naive, recursive, ring, tree
from .plan import PlanBuilder

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
        "tree": tree.all_reduce,
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
#: Operations with a root rank.
ROOTED = ("broadcast", "reduce", "scatter", "gather")
#: Algorithms that take ``nodes``.
TOPOLOGY_AWARE = ("hierarchical",)
#: Operations whose inputs must all have one shape (they add or swap elements).
_SAME_SHAPE = ("reduce", "all_reduce", "reduce_scatter", "all_to_all")


def lookup(op: str, algorithm: str) -> Callable[..., Result]:
    """The function for ``(op, algorithm)``; :class:`LayoutError` naming the choices otherwise."""
    if op not in ALGORITHMS:
        raise LayoutError(f"unknown collective {op!r}; choose one of: {', '.join(OPS)}")
    if algorithm not in ALGORITHMS[op]:
        raise LayoutError(
            f"collective {op} has no algorithm {algorithm!r}; "
            f"choose one of: {', '.join(ALGORITHMS[op])}"
        )
    return ALGORITHMS[op][algorithm]


def collective(
    op: str,
    xs: Sequence[Array],
    algorithm: str = "ring",
    root: int = 0,
    nodes: Sequence[int] | None = None,
) -> Result:
    """Run collective ``op`` over ``xs`` (one array per rank) with ``algorithm``.

    ``root`` matters for broadcast and reduce only; ``nodes`` (the node id of
    every rank) for topology-aware algorithms only. Returns
    ``(results_per_rank, plan)``.
    """
    run = lookup(op, algorithm)
    if xs and all(isinstance(x, ShapeArray) for x in xs):
        # shape-only: the result depends on the shapes alone, and both it and the
        # (interned) plan are immutable, so one run serves every repeat
        key = (
            op,
            algorithm,
            root,
            None if nodes is None else tuple(nodes),
            tuple((x.shape, x.dtype) for x in xs),
        )
        if key not in _SHAPE_ONLY:
            _SHAPE_ONLY[key] = _run(op, run, xs, algorithm, root, nodes)
        results, plan = _SHAPE_ONLY[key]
        return list(results), plan
    return _run(op, run, xs, algorithm, root, nodes)


_SHAPE_ONLY: dict[tuple, Result] = {}


def _run(
    op: str,
    run: Callable[..., Result],
    xs: Sequence[Array],
    algorithm: str,
    root: int,
    nodes: Sequence[int] | None,
) -> Result:
    p = len(xs)
    if p < 1:
        raise LayoutError(f"collective {op} needs at least one rank, got none")
    if op in _SAME_SHAPE and len({tuple(x.shape) for x in xs}) > 1:
        raise LayoutError(
            f"collective {op} needs arrays of one shape on every rank, got "
            f"{', '.join(str(tuple(x.shape)) for x in xs)}"
        )
    if nodes is not None and len(nodes) != p:
        raise LayoutError(f"nodes names {len(nodes)} ranks but the group has {p}")
    kwargs: dict = {}
    if op in ROOTED:
        if not 0 <= root < p:
            raise LayoutError(f"{op} root must be a rank of the group, 0 to {p - 1}; got {root}")
        kwargs["root"] = root
    if algorithm in TOPOLOGY_AWARE:
        kwargs["nodes"] = nodes
    return run(xs, **kwargs)


def send_recv(
    xs: Sequence[Array], algorithm: str = "ring", nodes: Sequence[int] | None = None
) -> Result:
    """Every rank sends its array to the next one (ring shift)."""
    return collective("send_recv", xs, algorithm, nodes=nodes)


def broadcast(
    xs: Sequence[Array],
    root: int = 0,
    algorithm: str = "tree",
    nodes: Sequence[int] | None = None,
) -> Result:
    """Every rank ends with a copy of ``xs[root]``."""
    return collective("broadcast", xs, algorithm, root, nodes)


def reduce(
    xs: Sequence[Array],
    root: int = 0,
    algorithm: str = "tree",
    nodes: Sequence[int] | None = None,
) -> Result:
    """The root ends with the elementwise sum; other ranks get ``None``."""
    return collective("reduce", xs, algorithm, root, nodes)


def all_reduce(
    xs: Sequence[Array], algorithm: str = "ring", nodes: Sequence[int] | None = None
) -> Result:
    """Every rank ends with the elementwise sum."""
    return collective("all_reduce", xs, algorithm, nodes=nodes)


def reduce_scatter(
    xs: Sequence[Array], algorithm: str = "ring", nodes: Sequence[int] | None = None
) -> Result:
    """Rank ``r`` ends with chunk ``r`` of the flattened elementwise sum."""
    return collective("reduce_scatter", xs, algorithm, nodes=nodes)


def all_gather(
    xs: Sequence[Array], algorithm: str = "ring", nodes: Sequence[int] | None = None
) -> Result:
    """Every rank ends with the concatenation of all ranks' arrays along axis 0."""
    return collective("all_gather", xs, algorithm, nodes=nodes)


def all_to_all(
    xs: Sequence[Array], algorithm: str = "ring", nodes: Sequence[int] | None = None
) -> Result:
    """Rank ``r`` ends with block ``r`` of every rank's flattened array, in rank order."""
    return collective("all_to_all", xs, algorithm, nodes=nodes)


from . import timing  # noqa: E402  (it uses collective(), defined above)

__all__ = [
    "ALGORITHMS",
    "OPS",
    "ROOTED",
    "TOPOLOGY_AWARE",
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
    "reduce",
    "reduce_scatter",
    "send_recv",
    "timing",
]
