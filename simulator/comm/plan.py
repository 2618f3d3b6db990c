"""A collective as data: the transfers an algorithm performs.

An algorithm (ring, tree, ...) is a pure function that moves and sums real
chunks of the ranks' arrays and, while doing so, writes down every message it
sent as a :class:`Transfer` between *group ranks*. The engine later maps the
ranks to devices and times the messages on the links (DESIGN.md, key decision
5): the closed forms of the alpha-beta model are what tests compare the
simulation with, never what it runs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Transfer:
    """One message of a collective.

    Attributes:
        step: the algorithm's step index (for traces and teaching).
        src: sending group rank.
        dst: receiving group rank.
        nbytes: message size.
        deps: indices (into the plan) of the transfers whose data this message
            carries or needs, i.e. that must arrive before it is sent.
    """

    step: int
    src: int
    dst: int
    nbytes: int
    deps: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The transfers of one collective, in an order consistent with ``deps``."""

    op: str
    algorithm: str
    group_size: int
    transfers: tuple[Transfer, ...]
    key: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Plans are used as cache keys many times; hash the transfers once.
        object.__setattr__(
            self, "key", hash((self.op, self.algorithm, self.group_size, self.transfers))
        )

    def __hash__(self) -> int:
        return self.key

    @property
    def steps(self) -> int:
        return 1 + max((t.step for t in self.transfers), default=-1)

    def bytes_sent(self, rank: int) -> int:
        return sum(t.nbytes for t in self.transfers if t.src == rank)


class PlanBuilder:
    """Collects transfers while an algorithm runs; see :mod:`simulator.comm`."""

    def __init__(self, op: str, algorithm: str, group_size: int) -> None:
        self.op = op
        self.algorithm = algorithm
        self.group_size = group_size
        self.transfers: list[Transfer] = []

    def send(
        self, step: int, src: int, dst: int, nbytes: int, deps: tuple[int, ...] | list[int] = ()
    ) -> int:
        """Record a message; returns its index for later ``deps``."""
        self.transfers.append(Transfer(step, src, dst, int(nbytes), tuple(deps)))
        return len(self.transfers) - 1

    def build(self) -> Plan:
        """The plan; equal plans come back as one shared object, so that caches keyed
        by plans (the engine times a plan once per group of devices) compare them by
        identity instead of message by message."""
        plan = Plan(self.op, self.algorithm, self.group_size, tuple(self.transfers))
        return _INTERNED.setdefault(plan, plan)


_INTERNED: weakref.WeakValueDictionary[Plan, Plan] = weakref.WeakValueDictionary()
