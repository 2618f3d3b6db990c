"""Closed forms of the alpha-beta model, and nccl-tests' bandwidth figures.

The alpha-beta (Hockney) model charges a message of ``n`` bytes
``alpha + n beta``: a fixed latency plus the bytes over the bandwidth
(``beta = 1 / bandwidth``). Counting the messages on the critical path of an
algorithm gives its time on an idle, non-blocking network; Thakur,
Rabenseifner and Gropp 2005 ("Optimization of collective communication
operations in MPICH", IJHPCA 19(1), section "Cost model" and the sections per
collective) derive them for MPICH's algorithms. The simulator never *uses*
these formulas: it times every message of an algorithm on the links, and the
tests check that on a single switch the result equals the formula below
(docs/design.md, key decision 5). Every docstring says where its formula comes
from; the derivations are in the algorithm modules.

Throughout, ``p`` is the group size and ``n`` the size in bytes nccl-tests
reports for the operation: the whole array for (all-)reduce, broadcast,
reduce-scatter (input) and all-gather (output), one rank's buffer for
all-to-all and send/recv.

nccl-tests (NVIDIA/nccl-tests, doc/PERFORMANCE.md) reports two bandwidths.
*Algorithm bandwidth* ``algbw = n / t``. *Bus bandwidth* ``busbw = algbw x
factor`` rescales it to the traffic on the busiest link of an optimal
algorithm, so that it is comparable with the hardware's link bandwidth
whatever ``p``: the factor is ``2 (p-1)/p`` for all-reduce (each rank sends and
receives that fraction of ``n`` twice), ``(p-1)/p`` for reduce-scatter,
all-gather and all-to-all, and 1 for broadcast, reduce and send/recv.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def _lg(p: int) -> int:
    """``lg p`` for a power of two ``p``."""
    return p.bit_length() - 1


def _ceil_lg(p: int) -> int:
    """``ceil(lg p)``: the rounds of a binomial tree over ``p`` ranks."""
    return (p - 1).bit_length()


def ring_all_reduce(p: int, n: float, alpha: float, beta: float) -> float:
    """``2 (p-1) alpha + 2 (p-1)/p n beta`` (Thakur et al. 2005, "Allreduce";
    Patarasuk and Yuan 2009, sec. 3, show the bandwidth term is optimal)."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta


def ring_all_gather(p: int, n: float, alpha: float, beta: float) -> float:
    """``(p-1) alpha + (p-1)/p n beta``: ring all-gather and ring reduce-scatter
    (Thakur et al. 2005, "Allgather"), and all-to-all by pairwise exchange,
    ``p-1`` shifts of ``n/p`` bytes (Thakur et al. 2005, "Alltoall")."""
    return (p - 1) * alpha + (p - 1) / p * n * beta


def recursive_doubling_all_reduce(p: int, n: float, alpha: float, beta: float) -> float:
    """``lg p (alpha + n beta)``, power-of-two ``p`` (Thakur et al. 2005, "Allreduce")."""
    return _lg(p) * (alpha + n * beta)


def recursive_all_gather(p: int, n: float, alpha: float, beta: float) -> float:
    """``lg p alpha + (p-1)/p n beta``: recursive-doubling all-gather and
    recursive-halving reduce-scatter, power-of-two ``p`` (Thakur et al. 2005,
    "Allgather" and "Reduce-Scatter")."""
    return _lg(p) * alpha + (p - 1) / p * n * beta


def rabenseifner_all_reduce(p: int, n: float, alpha: float, beta: float) -> float:
    """``2 lg p alpha + 2 (p-1)/p n beta``, power-of-two ``p`` (Thakur et al.
    2005, "Allreduce"; Rabenseifner 2004)."""
    return 2 * _lg(p) * alpha + 2 * (p - 1) / p * n * beta


def binomial_broadcast(p: int, n: float, alpha: float, beta: float) -> float:
    """``ceil(lg p) (alpha + n beta)``: binomial-tree broadcast or reduce
    (Thakur et al. 2005, "Broadcast" and "Reduce")."""
    return _ceil_lg(p) * (alpha + n * beta)


def pipeline_chunks(stages: int, n: float, alpha: float, beta: float) -> int:
    """The chunks that make a pipeline of ``stages`` hops fastest: ``(K + stages - 1)
    (alpha + n beta / K)`` is least at ``K = sqrt((stages - 1) n beta / alpha)``
    (Sanders, Speck and Traeff 2009, sec. 2), rounded, at least 1."""
    if alpha <= 0 or n <= 0:
        return 1
    return max(1, round(math.sqrt(max(stages - 1, 1) * n * beta / alpha)))


def chain_all_reduce(p: int, n: float, alpha: float, beta: float) -> float:
    """``(K + 2p - 3) (alpha + 2 n beta / K)``: NCCL's pipelined tree all-reduce on one
    switch, a chain of ``p`` ranks whose ``K`` chunks (:func:`pipeline_chunks` of the
    ``2 (p-1)`` hops up and back down) climb to the first rank while earlier ones come
    back down; the two ways share the channel's bandwidth, each getting half
    (:mod:`simulator.comm.nccl_tree`)."""
    if p < 2:
        return 0.0
    k = pipeline_chunks(2 * (p - 1), n, alpha, 2 * beta)
    return (k + 2 * p - 3) * (alpha + 2 * n * beta / k)


def naive_broadcast(p: int, n: float, alpha: float, beta: float) -> float:
    """``(p-1) (alpha + n beta)``: the root sends (or receives) ``p-1`` whole
    arrays through one port, one after another (the linear algorithm)."""
    return (p - 1) * (alpha + n * beta)


def naive_all_reduce(p: int, n: float, alpha: float, beta: float) -> float:
    """``2 (p-1) (alpha + n beta)``: a linear reduce, then a linear broadcast."""
    return 2 * naive_broadcast(p, n, alpha, beta)


def naive_all_gather(p: int, n: float, alpha: float, beta: float) -> float:
    """``(p-1) (alpha + n beta) + (p-1) (alpha + n/p beta)``: a linear gather of
    chunks and a linear broadcast of the whole array (all-gather), or a linear
    reduce of whole arrays and a linear scatter of chunks (reduce-scatter)."""
    return naive_broadcast(p, n, alpha, beta) + (p - 1) * (alpha + n / p * beta)


def naive_all_to_all(p: int, n: float, alpha: float, beta: float) -> float:
    """``2 (p-1) (alpha + (p-1)/p n beta)``: every rank's outgoing blocks to
    the relay and back out, each burst through one port of the relay."""
    return 2 * (p - 1) * (alpha + (p - 1) / p * n * beta)


def send_recv(p: int, n: float, alpha: float, beta: float) -> float:
    """``alpha + n beta``: one message per rank, all on different ports."""
    return alpha + n * beta


def two_level_all_reduce(
    g: int,
    nodes: int,
    n: float,
    alpha_intra: float,
    beta_intra: float,
    alpha_inter: float,
    beta_inter: float,
) -> float:
    """Hierarchical all-reduce, ``g`` devices per node on ``nodes`` nodes::

        2 (g-1) alpha_intra + 2 (g-1)/g n beta_intra
          + 2 (N-1) alpha_inter + 2 (N-1)/N (n/g) beta_inter

    a ring reduce-scatter and a ring all-gather inside the node around a ring
    all-reduce of ``n/g`` bytes across the ``N`` nodes (Jia et al. 2018,
    "Highly scalable deep learning training system with mixed-precision").
    """
    return ring_all_reduce(g, n, alpha_intra, beta_intra) + ring_all_reduce(
        nodes, n / g, alpha_inter, beta_inter
    )


def naive_scatter(p: int, n: float, alpha: float, beta: float) -> float:
    """``(p-1) (alpha + n/p beta)``: the root sends every other rank its ``n/p`` piece
    through its one out-port (gather: through its in-port)."""
    return (p - 1) * (alpha + n / p * beta)


#: ``FLAT[(op, algorithm)](p, n, alpha, beta)``: the time on one switch whose
#: every port has latency ``alpha`` and ``1/beta`` bytes/s. Exact for the
#: simulator when ``n`` divides into equal chunks (by ``p`` elements).
FLAT: dict[tuple[str, str], Callable[[int, float, float, float], float]] = {
    ("send_recv", "ring"): send_recv,
    ("broadcast", "tree"): binomial_broadcast,
    ("broadcast", "naive"): naive_broadcast,
    ("reduce", "tree"): binomial_broadcast,
    ("reduce", "naive"): naive_broadcast,
    ("all_reduce", "ring"): ring_all_reduce,
    ("all_reduce", "tree"): chain_all_reduce,
    ("all_reduce", "naive"): naive_all_reduce,
    ("all_reduce", "recursive"): recursive_doubling_all_reduce,
    ("all_reduce", "rabenseifner"): rabenseifner_all_reduce,
    ("all_reduce", "hierarchical"): ring_all_reduce,  # one node: only the inner rings
    ("reduce_scatter", "ring"): ring_all_gather,
    ("reduce_scatter", "recursive"): recursive_all_gather,
    ("reduce_scatter", "naive"): naive_all_gather,
    ("all_gather", "ring"): ring_all_gather,
    ("all_gather", "recursive"): recursive_all_gather,
    ("all_gather", "naive"): naive_all_gather,
    ("all_to_all", "ring"): ring_all_gather,
    ("all_to_all", "naive"): naive_all_to_all,
    ("scatter", "naive"): naive_scatter,
    ("gather", "naive"): naive_scatter,
}


def bus_factor(op: str, p: int) -> float:
    """nccl-tests' bus-bandwidth factor for ``op`` on ``p`` ranks (doc/PERFORMANCE.md)."""
    if op == "all_reduce":
        return 2 * (p - 1) / p
    if op in ("reduce_scatter", "all_gather", "all_to_all", "scatter", "gather"):
        return (p - 1) / p
    if op in ("broadcast", "reduce", "send_recv"):
        return 1.0
    raise ValueError(f"no bus-bandwidth factor for {op!r}")


def algbw(nbytes: float, seconds: float) -> float:
    """Algorithm bandwidth ``n / t`` in bytes/s (0 for an empty message)."""
    if nbytes == 0:
        return 0.0
    return nbytes / seconds if seconds > 0 else math.inf


def busbw(op: str, p: int, nbytes: float, seconds: float) -> float:
    """Bus bandwidth ``algbw x bus_factor(op, p)`` in bytes/s."""
    return algbw(nbytes, seconds) * bus_factor(op, p)
