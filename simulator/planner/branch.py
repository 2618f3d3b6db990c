"""Branch and bound over the layout space, families first (Land and Doig 1960).

The layouts of a search come in *families*: layouts that share ``dp``,
``tp``, ``pp``, the micro-batches, the schedule and its chunks, and differ in
recomputation, sequence parallelism, ZeRO stage and mesh order -- a few
hundred layouts each. A family has a *floor* (:meth:`~.bound.StepBound.floor`),
a bound on every member's step from compute alone, priced without looking at
any member; a layout has a tight bound (:meth:`~.bound.StepBound.seconds`)
once its rules have been checked.

The search works cheapest floor first. It *expands* a family -- checks each of
its layouts with the rules ``run`` applies (:class:`~.prune.Pruner`) and bounds
the survivors -- only while the family's floor is under the ``top``-th
fastest step it may have to beat, and it simulates a survivor only while the
survivor's bound is under the ``top``-th fastest step simulated so far. What
it never expands or never simulates cannot beat that step: every layout it
skips is provably no faster than the ``top`` it shows, so those are exactly
the ones an exhaustive search finds. Layouts of families never expanded are
never checked, and count as skipped by the bound whatever rule they might
also break.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SimulatorError
from ..parallel.strategy import Strategy
from .bound import StepBound
from .prune import Pruner

#: A layout's bound is the family floor's slack: expand what might beat this much more.
MARGIN = 1.03


@dataclass
class Family:
    """Layouts that differ only in recomputation, sequence parallelism, ZeRO and order.

    ``members`` are :func:`~simulator.planner.space.layout_groups` entries (a
    strategy and the mesh orders it is tried in); ``layouts`` counts them all.
    """

    members: list[tuple[Strategy, tuple[str, ...]]] = field(default_factory=list)
    layouts: int = 0
    floor: float = 0.0
    #: per member, its own floor (its recomputation, sequence parallelism and ZeRO)
    floors: list[float] = field(default_factory=list)


def families(groups: Iterable[tuple[Strategy, tuple[str, ...]]]) -> list[Family]:
    """The groups of :func:`~simulator.planner.space.layout_groups`, by family."""
    out: dict[tuple, Family] = {}
    for s, orders in groups:
        key = (s.dp, s.tp, s.pp, s.microbatches, s.schedule if s.pp > 1 else None, s.chunks)
        family = out.setdefault(key, Family())
        family.members.append((s, orders))
        family.layouts += len(orders)
    return list(out.values())


@dataclass(order=True)
class Candidate:
    """A layout that passed every rule, with its bound and memory estimate."""

    bound: float
    strategy: Strategy = field(compare=False)
    estimate: float = field(compare=False)
    #: whether ``bound`` is the tight bound yet (else the member's floor)
    tight: bool = field(default=False, compare=False)


class BranchAndBound:
    """The families of a search and what expanding them found (module docstring)."""

    def __init__(self, pruner: Pruner, bound: StepBound, fams: list[Family],
                 name: Callable[[Strategy], str]) -> None:  # fmt: skip
        self.pruner = pruner
        self.bound = bound
        self.name = name
        waiting = []
        for i, family in enumerate(fams):
            # members that break a layout rule or whose memory floor is over: counted now
            kept = []
            for s, orders in family.members:
                rule = pruner.first_failure(s)
                if rule is None:
                    kept.append((s, orders))
                else:
                    pruner.reject(rule, len(orders))
            if not kept:
                continue
            family.members = kept
            family.layouts = sum(len(orders) for _, orders in kept)
            family.floors = bound.floor([s for s, _ in kept], [orders for _, orders in kept])
            family.floor = min(family.floors)
            waiting.append((family.floor, i, family))
        heapq.heapify(waiting)
        self._waiting = waiting

    @property
    def next_floor(self) -> float:
        """The least floor of a family not yet expanded (inf when none is left)."""
        return self._waiting[0][0] if self._waiting else float("inf")

    @property
    def unexpanded(self) -> int:
        """Layouts in families not expanded (skipped by the bound if the search ends)."""
        return sum(f.layouts for _, _, f in self._waiting)

    def expand(self, below: float, at_least: int = 0) -> list[Candidate]:
        """Expand every family whose floor is under ``below`` -- and, cheapest first,
        enough more to have ``at_least`` candidates -- returning their survivors, each
        with its own floor (:meth:`bound` gives the tight one when it is wanted)."""
        found: list[Candidate] = []
        while self._waiting and (self._waiting[0][0] < below or len(found) < at_least):
            _, _, family = heapq.heappop(self._waiting)
            for (s, orders), floor in zip(family.members, family.floors, strict=True):
                for survivor, estimate in self.pruner.survivors_of_groups([(s, orders)]):
                    found.append(Candidate(floor, _named(survivor, self.name), estimate))
        return sorted(found)

    def tighten(self, candidates: list[Candidate], k: int) -> None:
        """Tighten bounds, least first, until the ``k`` least are all tight: those run
        first, and the better they are the sooner the rest is skipped."""
        heap = list(candidates)
        heapq.heapify(heap)
        tight = 0
        while heap and tight < k:
            c = heapq.heappop(heap)
            if c.tight:
                tight += 1
            else:
                self.bound_of(c)
                heapq.heappush(heap, c)

    def bound_of(self, candidate: Candidate) -> float:
        """The tight bound of a candidate (:meth:`~.bound.StepBound.seconds`), worked out
        once; its floor stands for a rule only the full schedule breaks."""
        if not candidate.tight:
            candidate.tight = True
            with contextlib.suppress(SimulatorError):  # a rule only the run finds
                candidate.bound = max(candidate.bound, self.bound.seconds(candidate.strategy))
        return candidate.bound


def _named(s: Strategy, name: Callable[[Strategy], str]) -> Strategy:
    from dataclasses import replace

    return replace(s, name=name(s))


class Fastest:
    """The ``k`` fastest steps of the runs that fit so far."""

    def __init__(self, k: int, results: Iterable[dict[str, Any] | None] = ()) -> None:
        self.k = k
        self._steps: list[float] = []  # negated: a max-heap of the k fastest
        for r in results:
            self.add(r)

    def add(self, result: dict[str, Any] | None) -> None:
        if result is not None and result["status"] == "ok":
            heapq.heappush(self._steps, -result["iteration_time_s"])
            if len(self._steps) > self.k:
                heapq.heappop(self._steps)

    @property
    def kth(self) -> float:
        """The ``k``-th fastest step (inf until ``k`` runs fit)."""
        return -self._steps[0] if len(self._steps) == self.k else float("inf")


class Rounds:
    """Which candidates a round of :func:`~simulator.planner.executor.run_tasks` still
    runs: those whose bound is under the ``k``-th fastest step of the rounds before
    (and of ``fastest``, what earlier waves found)."""

    def __init__(self, candidates: list[Candidate], fastest: Fastest, round_size: int,
                 tighten: Callable[[Candidate], float]) -> None:  # fmt: skip
        self.candidates = candidates
        self.fastest = fastest
        self.round_size = round_size
        self.tighten = tighten
        self.skipped = 0
        self._seen = 0  # results before this index are in ``fastest``

    def wanted(self, i: int, results: list[dict[str, Any] | None]) -> bool:
        final = i - i % self.round_size  # the rounds before i's are over: their results stand
        for r in results[self._seen : final]:
            self.fastest.add(r)
        self._seen = max(self._seen, final)
        kth = self.fastest.kth
        candidate = self.candidates[i]
        if candidate.bound >= kth or self.tighten(candidate) >= kth:
            self.skipped += 1
            return False
        return True
