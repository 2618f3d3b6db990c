"""A simulated worker: one SimPy process, its devices, and everything it holds.

The plan (:mod:`simulator.parallel.build`) has one :class:`~simulator.parallel.worker.Worker`
per pipeline rank of every data-parallel replica: a lockstep tensor-parallel
group with its chunks and its program. The runtime simulates a
:class:`SimWorker` for each -- or, when the replicas are provably identical
(:mod:`simulator.runtime.fold`), one SimWorker per pipeline rank that stands
for all of its replicas, its *members*.

A SimWorker owns its per-step state, so nothing about a micro-batch lives on
the layers (docs/design.md, key decision 1) or on the runtime:

* ``stash``: what each forward left for its backward (and B for its W), per
  member, keyed by ``(stage, micro-batch)``;
* ``buffers``: activations and gradients that arrived or were produced for a
  stage on this worker, per member, keyed by message id;
* what the metrics and the pictures read: compute seconds, micro-batches in
  flight, and every stretch it sat idle waiting for a collective of its own
  group -- *exposed communication* (docs/design.md, "Definitions"), recorded
  here, where it happens (:meth:`SimWorker.expose`), and nowhere else.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..comm.layout import GroupLayout
from ..engine import Engine
from ..engine.cost import Cost
from ..engine.memory import MemoryLedger
from ..parallel.worker import Worker


@dataclass(eq=False)
class SimWorker:
    """One simulated process (see the module docstring).

    Attributes:
        index: position among the simulated workers.
        members: the plan workers it stands for (one unless folded), replica order.
        devices: the devices it is timed on (the first member's).
        shown: every device it stands for, member after member.
        group: the trace group id of ``shown``.
        ledger: the memory ledger all of ``shown`` share (None once they hold
            different bytes, or when their memories differ in size: then each
            device has its own).
        program: the instructions it runs every step (shared by its members).
        message_base: offset of its replica's message ids in the mailbox.
        layout: where its tensor-parallel group sits, relabelled
            (:meth:`~simulator.comm.layout.GroupLayout.relabelled`); workers with the
            same layout time their collectives alike.
        cost: what prices its compute: its devices' roofline
            (:meth:`~simulator.engine.Engine.cost_of`); workers with the same
            cost object run on the same kinds of device.
        known: shape-only, what each action kind did the first time on a worker
            of this layout and cost (:mod:`simulator.runtime.compute`).
    """

    index: int
    members: list[Worker]
    devices: tuple[int, ...]
    shown: tuple[int, ...]
    group: int
    ledger: MemoryLedger
    program: list[tuple]
    message_base: int
    layout: GroupLayout
    cost: Cost
    known: list[Any] = field(default_factory=list)
    #: the trace track of each known action kind on this worker (:mod:`.compute`)
    tracks: dict[int, int] = field(default_factory=dict)
    stash: dict[tuple, list[Any]] = field(default_factory=dict)
    buffers: dict[int, list[Any]] = field(default_factory=dict)
    inflight: int = 0
    peak_inflight: int = 0
    compute_s: float = 0.0
    #: this step's exposed communication: its total, and its stretches as
    #: ``start, end, start, end, ...``
    exposed_s: float = 0.0
    exposed: array = field(default_factory=lambda: array("d"))
    waiting_for: str | tuple = ""  # what it waits for: words, or the receive instruction
    #: the action whose end frees its stash, and what it frees (see runtime.compute)
    releasing: Any = None
    #: what the MoE layers of its last forward reported (:class:`~simulator.nn.context.Reports`)
    reports: Any = None
    #: while an overlapped pair runs (:mod:`.pairs`): its compute stream, which the two
    #: halves take turns on, and the stretches it waited and computed, held till it ends
    stream: Any = None
    held: Any = None
    #: how a straggler stretches this worker's compute (None: full speed)
    pace: Callable[[float], float] | None = None
    #: its process this step, and when one of its devices failed (runtime.fault_model)
    process: Any = None
    failed: tuple[int, float] | None = None
    #: the step it is in (without a barrier, workers may be in different steps)
    step: int = 0
    #: its *span* this step (Qi et al. 2024, sec. 5.3): when its first pipeline action
    #: started (-1 before), when its last one so far ended, and its busy seconds
    #: (compute and exposed communication) at those two moments
    span_start: float = -1.0
    span_end: float = 0.0
    busy_at_start: float = 0.0
    busy_at_end: float = 0.0

    @property
    def pp_rank(self) -> int:
        return self.members[0].pp_rank

    @property
    def lead(self) -> Worker:
        """The member whose chunks are timed (and, shape-only, the only one that runs)."""
        return self.members[0]

    def describe(self) -> str:
        dp = ", ".join(str(m.dp_rank) for m in self.members)
        return f"worker {self.lead.index} (dp {dp}, pp rank {self.pp_rank})"

    def charge(self, engine: Engine, category: int, per_rank: list[int]) -> None:
        """Change memory ``category`` by ``per_rank[r]`` bytes on rank ``r``'s devices.

        Ranks in lockstep hold the same bytes and share one ledger; the first
        change that differs between them gives every device a ledger of its own.
        """
        first = per_rank[0]
        if self.ledger is not None and per_rank.count(first) == len(per_rank):
            self.ledger.change(category, first)
            return
        if self.ledger is not None and len(self.shown) > 1:
            engine.split_ledger(self.shown)
        self.ledger = None  # type: ignore[assignment]
        t = len(self.devices)
        for i, d in enumerate(self.shown):
            engine.memory[d].change(category, per_rank[i % t])

    def expose(self, start: float, end: float) -> None:
        """It sat idle from ``start`` to ``end`` waiting for a collective of its own group."""
        if self.held is not None:  # an overlapped pair: the other half may be computing
            self.held[0].append((start, end))
            return
        self.exposed_s += end - start
        self.exposed.append(start)
        self.exposed.append(end)

    def expose_all(self, stretches: Iterable[tuple[float, float]]) -> None:
        """:meth:`expose` for the stretches of one wait, in time order (empty ones are
        left out)."""
        kept = [(a, b) for a, b in stretches if b > a]
        if self.held is not None:
            self.held[0].extend(kept)
            return
        # summed per wait, then added: the metrics' exposed_comm_s, to the last bit
        self.exposed_s += sum(b - a for a, b in kept)
        for a, b in kept:
            self.exposed.append(a)
            self.exposed.append(b)

    def begin_action(self, now: float) -> None:
        """A pipeline action starts at ``now`` (before its time is counted)."""
        if self.span_start < 0:
            self.span_start = now
            self.busy_at_start = self.compute_s + self.exposed_s

    def end_action(self, end: float) -> None:
        """The action under way ends at ``end`` (its time counted)."""
        self.span_end = end
        self.busy_at_end = self.compute_s + self.exposed_s

    @property
    def span(self) -> tuple[float, float]:
        """Its span this step and the idle time inside it (neither computing nor
        waiting for a collective of its own group): the pipeline bubble it sits in."""
        if self.span_start < 0:
            return 0.0, 0.0
        length = self.span_end - self.span_start
        return length, max(0.0, length - (self.busy_at_end - self.busy_at_start))

    def start_step(self, step: int) -> None:
        self.step = step
        self.span_start = -1.0
        self.span_end = self.busy_at_start = self.busy_at_end = 0.0
        self.compute_s = self.exposed_s = 0.0
        self.exposed = array("d")
        self.inflight = self.peak_inflight = 0
        self.waiting_for = ""
