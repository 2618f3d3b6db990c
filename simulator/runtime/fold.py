"""Folding identical data-parallel replicas into one simulated replica.

Data-parallel replicas run the same program on the same shapes. When their
hardware is the same too, their timelines are identical -- every replica's
device does the same thing at the same moment -- and simulating all of them
repeats one replica's events ``dp`` times. So the runtime simulates one
worker per pipeline rank that stands for all of that rank's replicas (its
*members*): the data-parallel collectives still run over the whole group of
devices, with every replica's numbers, but everything else is simulated once
and recorded once for all of them (docs/design.md, key decision 8). Results and
pictures still list every device; ``results.json`` says how many replicas
each simulated one stood for (``folded_replicas``).

Folding is automatic, and taken only when it provably gives the unfolded
run's numbers exactly. The replicas are identical when:

1. the strategy is DDP or ZeRO (``nn.DataParallel``'s primary does extra work),
   and no fault (a straggler, a slow link, a failure) touches its devices;
   and the replicas hold the same weights (expert parallelism gives each its
   own experts, and tokens travel between them);
2. every replica's devices are of the same kind as replica 0's at the same
   positions, and so are the links of their nodes (on a cluster whose nodes
   differ, an H100 replica does not stand for an A100 one);
3. every replica's links are of the same kind as replica 0's wherever it
   sends: inside each tensor-parallel group and between the ranks its
   pipeline messages and tied-weight sums connect (a layout whose replicas
   straddle node boundaries differently is not folded);
4. no replica shares a port with another: each device has its own ports.

The data-parallel traffic may overlap the replicas' own (DDP buckets during
backward, ZeRO-1's overlapped and ZeRO-2's reduce-scatters, ZeRO-3's
prefetched gathers): a data-parallel collective books its links after everything else of its moment
(:mod:`simulator.runtime.meetings`), and it shares each replica's ports with
that replica's own traffic in the same way (:mod:`simulator.engine.network`),
so the replicas stay identical.

The data-parallel collectives book the ports of every replica. The ports of
replica ``d > 0`` saw none of its own pipeline and tensor-parallel traffic,
which replica 0's ports saw for it; so before a collective books a port of
replica ``d``, the port catches up with the last of that own traffic on its
twin in replica 0 (see :meth:`simulator.engine.network.Network.catch_up`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..parallel.build import Plan
from ..parallel.data import get_variant
from ..parallel.program import SEND
from .fault_model import FaultModel


@dataclass(frozen=True)
class Fold:
    """``replicas`` data-parallel replicas per simulated one (1: not folded), and why."""

    replicas: int
    reason: str

    def __bool__(self) -> bool:
        return self.replicas > 1


def decide_fold(plan: Plan, allowed: bool, faults: FaultModel | None = None) -> Fold:
    """Fold when allowed and exact (module docstring)."""
    s = plan.strategy
    if s.dp == 1:
        return Fold(1, "one replica")
    if not allowed:
        return Fold(1, "folding turned off")
    if faults and faults.touches(d for w in plan.workers for d in w.devices):
        return Fold(1, "a fault makes the replicas differ")
    refusal = get_variant(s.data_parallel).fold_refusal
    if refusal:
        return Fold(1, refusal)
    if s.ep > 1:
        return Fold(1, "expert-parallel replicas hold different experts")
    if not _alike_hardware(plan):
        return Fold(1, "the replicas' devices differ")
    peers = [
        sorted({ins[4] for ins in plan.worker(0, r).program if ins[0] == SEND}) for r in range(s.pp)
    ]
    signatures = {_signature(plan, d, peers) for d in range(s.dp)}
    if len(signatures) > 1:
        return Fold(1, "the replicas' links differ")
    if not _own_ports(plan):
        return Fold(1, "the replicas share network adapters")
    return Fold(s.dp, f"{s.dp} identical replicas")


def _alike_hardware(plan: Plan) -> bool:
    """Whether every replica's devices sit in nodes of the kind replica 0's do, position
    by position (the node's kind holds its devices and its links)."""
    cluster = plan.cluster
    if cluster.homogeneous:
        return True

    def kinds(d: int) -> list:
        workers = [plan.worker(d, r) for r in range(plan.strategy.pp)]
        return [cluster.node_spec(cluster.node_of(x)) for w in workers for x in w.devices]

    first = kinds(0)
    return all(kinds(d) == first for d in range(1, plan.strategy.dp))


def _signature(plan: Plan, d: int, peers: list[list[int]]) -> tuple:
    """Which of replica ``d``'s device pairs that talk share a node, in replica order;
    ``peers[r]`` are the pipeline ranks rank ``r`` sends to."""
    cluster = plan.cluster

    def same_node(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[bool, ...]:
        return tuple(cluster.node_of(x) == cluster.node_of(y) for x in a for y in b)

    out = []
    for r in range(plan.strategy.pp):
        devices = plan.worker(d, r).devices
        out.append(same_node(devices, devices))
        out += [same_node(devices, plan.worker(d, p).devices) for p in peers[r]]
    for pair in plan.tied:
        if plan.workers[pair.owner].dp_rank == 0:
            owner, user = plan.workers[pair.owner].pp_rank, plan.workers[pair.user].pp_rank
            out.append(same_node(plan.worker(d, owner).devices, plan.worker(d, user).devices))
    return tuple(out)


def _own_ports(plan: Plan) -> bool:
    """Whether no NIC serves two replicas and every replica shares its NICs alike
    (device ``i`` and ``j`` of a replica share one exactly when they do in replica 0)."""
    cluster = plan.cluster
    owner: dict[int, int] = {}
    patterns = set()
    for d in range(plan.strategy.dp):
        devices = [x for r in range(plan.strategy.pp) for x in plan.worker(d, r).devices]
        nics = [cluster.nic_of(x) for x in devices]
        if any(owner.setdefault(n, d) != d for n in nics):
            return False
        first = {}
        patterns.add(tuple(first.setdefault(n, i) for i, n in enumerate(nics)))
    return len(patterns) == 1


def mirrors(plan: Plan) -> dict[int, int]:
    """Every device of replica ``d > 0`` -> its twin in replica 0."""
    out = {}
    for w in plan.workers:
        if w.dp_rank:
            twin = plan.worker(0, w.pp_rank)
            out.update(zip(w.devices, twin.devices, strict=True))
    return out
