"""Branch and bound over the layout space, best first (Land and Doig 1960).

The layouts of a search come in *families*: layouts that share ``dp``,
``tp``, ``pp``, the micro-batches, the schedule and its chunks, and differ in
recomputation, sequence parallelism, ZeRO stage and mesh order -- a few
hundred layouts each. A family has a *floor* (:meth:`~.bound.StepBound.floor`),
a bound on every member's step from compute alone, priced without looking at
any member; a layout has a tight bound (:meth:`~.bound.StepBound.seconds`)
once its rules have been checked.

One priority queue holds the families not yet expanded, keyed by their
floors, and the layouts of the expanded ones, keyed by their bounds (each
member's floor until its bounds are worked out). The search takes the
least key: a family is *expanded* -- its layouts checked with the rules
``run`` applies (:class:`~.prune.Pruner`) and queued --, a layout with a
floor gets its quick bound (:meth:`~.bound.StepBound.quick`, no walk
through the schedule) and goes back, a layout with its quick bound gets its
tight bound and goes back, and a layout with its tight bound is the next to
simulate. Each bound is at least the one before (a key only grows), and most
layouts of a large search never need the tight one: their quick bound is
already over the step they must beat. Rounds of the least tight bounds are
simulated together; the search ends when the least key is no better than the
``top``-th fastest step simulated. Every layout it skips, simulated never
or expanded never, is then provably no faster than the ``top`` it shows, so
those are exactly the ones an exhaustive search finds. It works out tight
bounds and expands families only as the least keys call for them (and, while
the workers simulate, up to a round ahead: :meth:`BranchAndBound.prepare`),
and it simulates in the order of the bounds, so the fastest layouts are
found in the first rounds. Layouts of families never expanded are never
checked, and count as skipped by the bound whatever rule they might also
break.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SimulatorError
from ..parallel.strategy import Strategy
from .bound import StepBound
from .prune import Pruner

#: Layouts simulated together, a round of :func:`~.executor.run_tasks`: what one
#: round runs is chosen from the results of the rounds before it alone.
ROUND = 8


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
    #: whether ``bound`` is the tight bound yet
    tight: bool = field(default=False, compare=False)
    #: whether ``bound`` is at least the quick bound yet (else the member's floor)
    quick: bool = field(default=False, compare=False)


class BranchAndBound:
    """The families of a search and what expanding them found (module docstring)."""

    def __init__(self, pruner: Pruner, bound: StepBound, fams: list[Family],
                 name: Callable[[Strategy], str], workers: int = 1) -> None:  # fmt: skip
        """Check every family's members and work out their floors (:func:`checked`),
        in ``workers`` processes when there are more than one and this system can
        fork; the outcome is the same."""
        self.pruner = pruner
        self.bound = bound
        self.name = name
        waiting = []
        for i, kept, rejected, floors in _checked_in(workers, pruner, bound, fams):
            for rule, layouts in rejected.items():
                pruner.reject(rule, layouts)
            if not kept:
                continue
            family = fams[i]
            family.members = [family.members[j] for j in kept]
            family.layouts = sum(len(orders) for _, orders in family.members)
            family.floors = floors
            family.floor = min(floors)
            waiting.append((family.floor, i, family))
        heapq.heapify(waiting)
        self._waiting = waiting
        #: expanded layouts by bound: (bound, order queued, candidate)
        self._queue: list[tuple[float, int, Candidate]] = []
        self._order = itertools.count()
        #: layouts with their tight bounds, least first, all under every key left
        self._ready: deque[Candidate] = deque()

    @property
    def next_floor(self) -> float:
        """The least floor of a family not yet expanded (inf when none is left)."""
        return self._waiting[0][0] if self._waiting else float("inf")

    @property
    def unexpanded(self) -> int:
        """Layouts in families not expanded (skipped by the bound if the search ends)."""
        return sum(f.layouts for _, _, f in self._waiting)

    @property
    def queued(self) -> int:
        """Layouts expanded and not handed out by :meth:`next_round` (skipped if the
        search ends)."""
        return len(self._queue) + len(self._ready)

    def expand(self, below: float) -> list[Candidate]:
        """Expand every family whose floor is under ``below`` and return their
        survivors, least floor first, each with its member's floor
        (:meth:`bound_of` gives the tight one)."""
        found: list[Candidate] = []
        while self._waiting and self._waiting[0][0] < below:
            found += self._expand_next()
        return sorted(found)

    def _expand_next(self) -> list[Candidate]:
        """The survivors of the family with the least floor, which leaves the queue."""
        _, _, family = heapq.heappop(self._waiting)
        found = []
        for (s, orders), floor in zip(family.members, family.floors, strict=True):
            for survivor, estimate in self.pruner.survivors_of_groups([(s, orders)]):
                found.append(Candidate(floor, _named(survivor, self.name), estimate))
        return found

    def next_round(self, size: int, below: float) -> Iterator[Candidate]:
        """The next ``size`` layouts to simulate (module docstring), each given as soon
        as it is known: the least tight bounds under ``below`` of every layout not yet
        handed out, expanding families and tightening bounds only as far as that
        takes. Fewer when fewer are under ``below``; none ends the search."""
        given = 0
        while given < size:
            if not self._ready and (self._least() >= below or not self._step()):
                return
            if self._ready:
                if self._ready[0].bound >= below:
                    return
                given += 1
                yield self._ready.popleft()

    def ready(self) -> Iterator[Candidate]:
        """The layouts whose tight bounds are known and that are not handed out yet, in
        the order :meth:`next_round` hands them out: what may be run ahead of it."""
        return iter(self._ready)

    def prepare(self, size: int) -> bool:
        """One step of the work a round of ``size`` will want, whatever the step it must
        beat: while the workers simulate, the search expands and tightens ahead, in the
        order :meth:`next_round` would, so what a round runs is the same. Returns
        whether there is more to do."""
        return len(self._ready) < size and self._step()

    def _least(self) -> float:
        """The least key of a family or layout not yet ready."""
        queued = self._queue[0][0] if self._queue else float("inf")
        return min(self.next_floor, queued)

    def _step(self) -> bool:
        """Take the least key: expand its family, or tighten its layout's bound, or, if
        tight, make the layout ready (keys only grow, so ready layouts come in order).
        False when nothing is left."""
        if not self._waiting and not self._queue:
            return False
        queued = self._queue[0][0] if self._queue else float("inf")
        if self.next_floor < queued:
            for c in self._expand_next():
                self._push(c)
            return True
        _, _, c = heapq.heappop(self._queue)
        if c.tight:
            self._ready.append(c)
        elif not c.quick:
            c.quick = True
            with contextlib.suppress(SimulatorError):  # a rule only the run finds
                c.bound = max(c.bound, self.bound.quick(c.strategy))
            self._push(c)
        else:
            self.bound_of(c)
            self._push(c)
        return True

    def _push(self, c: Candidate) -> None:
        """Queue ``c`` by its bound; ties go in the order queued."""
        heapq.heappush(self._queue, (c.bound, next(self._order), c))

    def bound_of(self, candidate: Candidate) -> float:
        """The tight bound of a candidate (:meth:`~.bound.StepBound.seconds`), worked out
        once; its floor stands for a rule only the full schedule breaks."""
        if not candidate.tight:
            candidate.tight = True
            with contextlib.suppress(SimulatorError):  # a rule only the run finds
                candidate.bound = max(candidate.bound, self.bound.seconds(candidate.strategy))
        return candidate.bound


#: A family's check: its index, the members kept, the layouts rejected by rule, and
#: the kept members' floors.
Checked = tuple[int, list[int], dict[str, int], list[float]]


def checked(pruner: Pruner, bound: StepBound, fams: list[Family], which: range) -> list[Checked]:
    """The families ``which`` of ``fams``, checked: the members that break a layout rule
    or whose memory floor is over the device's are counted by rule and dropped, and
    the others get their floors (:meth:`~.bound.StepBound.floor`)."""
    out = []
    for i in which:
        kept: list[int] = []
        rejected: dict[str, int] = {}
        for j, (s, orders) in enumerate(fams[i].members):
            rule = pruner.first_failure(s)
            if rule is None:
                kept.append(j)
            else:
                rejected[rule] = rejected.get(rule, 0) + len(orders)
        members = [fams[i].members[j] for j in kept]
        floors = bound.floor([s for s, _ in members], [o for _, o in members]) if kept else []
        out.append((i, kept, rejected, floors))
    return out


#: What a forked process checks: set just before the fork, read by :func:`_check_forked`.
_FORKED: tuple[Pruner, StepBound, list[Family]] | None = None


def _check_forked(which: range) -> list[Checked]:
    pruner, bound, fams = _FORKED  # type: ignore[misc]
    return checked(pruner, bound, fams, which)


def _checked_in(
    workers: int, pruner: Pruner, bound: StepBound, fams: list[Family]
) -> list[Checked]:
    """:func:`checked` of every family, in order: with two processes or more and the
    ``fork`` start method, the later families (half of the layouts) in a forked
    process that inherits the search's state, while this one checks the earlier. The
    checks depend on the family alone, so the outcome is the one process's."""
    import multiprocessing

    everything = range(len(fams))
    if workers < 2 or len(fams) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return checked(pruner, bound, fams, everything)
    from concurrent.futures import ProcessPoolExecutor

    total, running, cut = sum(f.layouts for f in fams), 0, 0
    while cut < len(fams) - 1 and 2 * running < total:
        running += fams[cut].layouts
        cut += 1
    global _FORKED
    _FORKED = (pruner, bound, fams)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            later = pool.submit(_check_forked, range(cut, len(fams)))
            earlier = checked(pruner, bound, fams, range(cut))
            return earlier + later.result()
    finally:
        _FORKED = None


def _named(s: Strategy, name: Callable[[Strategy], str]) -> Strategy:
    from dataclasses import replace

    return replace(s, name=name(s))


class Fastest:
    """The ``k`` fastest steps of the runs that fit so far."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._steps: list[float] = []  # negated: a max-heap of the k fastest

    def add(self, result: dict[str, Any] | None) -> None:
        if result is not None and result["status"] == "ok":
            heapq.heappush(self._steps, -result["iteration_time_s"])
            if len(self._steps) > self.k:
                heapq.heappop(self._steps)

    @property
    def kth(self) -> float:
        """The ``k``-th fastest step (inf until ``k`` runs fit)."""
        return -self._steps[0] if len(self._steps) == self.k else float("inf")
