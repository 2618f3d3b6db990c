"""A collective as data: the messages an algorithm sends, between group ranks.

An algorithm (ring, tree, ...) is a pure function that moves and sums real
chunks of the ranks' arrays and, while doing so, writes down every message it
sent as a :class:`Transfer` between *group ranks*. The engine later maps the
ranks to devices and times the messages on the links (DESIGN.md, key decision
5): the closed forms of the alpha-beta model are what tests compare the
simulation with, never what it runs.

This module is a leaf: the collectives (:mod:`simulator.comm`) build
:class:`TransferPlan` objects and the engine (:mod:`simulator.engine`) times
them, and neither needs the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


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
class TransferPlan:
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

    @cached_property
    def bytes_by_rank(self) -> tuple[int, ...]:
        """Bytes every rank sends, in rank order."""
        sent = [0] * self.group_size
        for t in self.transfers:
            sent[t.src] += t.nbytes
        return tuple(sent)
