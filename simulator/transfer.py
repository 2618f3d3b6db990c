"""A collective as data: the messages an algorithm sends, between group ranks.

An algorithm (ring, tree, ...) moves and sums real chunks of the ranks'
arrays and, while doing so, writes down every message it sends between
*group ranks*. The engine later maps the ranks to devices and times the
messages on the links (docs/design.md, key decision 5): the closed forms of the
alpha-beta model are what tests compare the simulation with, never what it
runs.

The messages are kept in *rounds*. A :class:`Round` is the set of messages
that leave together in one step of one channel: message ``i`` goes from
``src[i]`` to ``dst[i]``. A ring all-reduce over ``p`` ranks sends ``2 (p-1) p``
messages, but its rounds all share one ``src`` and one ``dst`` tuple (the
ring), and the chunk sizes rotate by one position per step, so a round stores
``sizes`` once and a ``shift``: the plan of a ring over a thousand devices
takes memory linear, not quadratic, in the group (the engine times rounds as
vectors, :mod:`simulator.engine.network`). :attr:`TransferPlan.transfers`
expands the rounds into single :class:`Transfer` records for traces and tests.

*Dependencies.* A message waits for every message its sender received earlier
in the same channel and *flow* (``wait``): whatever a rank sends is a sum or a copy of
what it has. *Channels* are independent parallel rings or trees (NCCL runs a
collective as several, each on its own share of the data); a message depends
only on receipts of its own channel. Within a channel, data that moves in
opposite directions at once -- a pipelined tree's chunks climbing to the root
while earlier ones come back down -- are separate *flows*, so a chunk going
up never waits for one coming down; a message may also wait for the receipts
of other flows (``after``): the root sends a chunk down once it came up.

This module is a leaf: the collectives (:mod:`simulator.comm`) build
:class:`TransferPlan` objects and the engine (:mod:`simulator.engine`) times
them, and neither needs the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Transfer:
    """One message of a collective.

    Attributes:
        step: the algorithm's step index (for traces and teaching).
        src: sending group rank.
        dst: receiving group rank.
        nbytes: message size.
        deps: indices (into :attr:`TransferPlan.transfers`) of the messages the
            sender received, in this channel, since its previous message (or,
            if none, those its previous message waited for): what must arrive
            before this one leaves.
        channel: the parallel ring or tree this message belongs to.
    """

    step: int
    src: int
    dst: int
    nbytes: int
    deps: tuple[int, ...] = ()
    channel: int = 0


@dataclass(frozen=True)
class Round:
    """Messages of one channel that leave together in one step.

    Message ``i`` goes from ``src[i]`` to ``dst[i]`` and carries
    ``sizes[(i + shift) % len(sizes)]`` bytes (one size serves all when
    ``sizes`` has one entry). ``wait``: each message leaves only when
    everything its sender received before, in this channel and ``flow`` (and
    in the flows ``after``), has arrived.
    """

    step: int
    src: tuple[int, ...]
    dst: tuple[int, ...]
    sizes: tuple[int, ...]
    shift: int = 0
    channel: int = 0
    wait: bool = True
    flow: int = 0
    after: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.src)

    def nbytes(self, i: int) -> int:
        """Bytes of message ``i``."""
        sizes = self.sizes
        return sizes[0] if len(sizes) == 1 else sizes[(i + self.shift) % len(sizes)]

    def arrays(self, cache: dict[int, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``src``, ``dst`` and the bytes of every message as integer arrays.

        ``cache`` (keyed by ``id``) keeps the arrays of the tuples rounds share,
        so that a plan's rounds convert each shared tuple once; it must live
        no longer than the plan.
        """
        src, dst, sizes = (_array(t, cache) for t in (self.src, self.dst, self.sizes))
        if len(sizes) == 1:
            nbytes = np.full(len(src), sizes[0], dtype=np.int64)
        elif self.shift == 0 and len(sizes) == len(src):
            nbytes = sizes
        else:
            nbytes = sizes[(_array(len(src), cache) + self.shift) % len(sizes)]
        return src, dst, nbytes


def _array(values: tuple[int, ...] | int, cache: dict[int, Any]) -> np.ndarray:
    """``values`` as an int64 array, or ``arange(values)`` for a length; cached by id."""
    key = id(values) if isinstance(values, tuple) else -values - 1
    hit = cache.get(key)
    if hit is None or (isinstance(values, tuple) and hit[0] is not values):
        array = np.arange(values) if isinstance(values, int) else np.asarray(values, np.int64)
        hit = cache[key] = (values, array)
    return hit[1]


@dataclass(frozen=True, eq=False)
class TransferPlan:
    """The rounds of one collective, in the order they are issued.

    ``key`` identifies the plan: the algorithm builds a plan as a pure
    function of what the key says (operation, algorithm, sizes, layout), so
    two plans with one key are equal, and comparing or hashing a plan never
    walks its messages (plans key many caches).
    """

    op: str
    algorithm: str
    group_size: int
    rounds: tuple[Round, ...]
    channels: int = 1
    key: Any = None

    def _identity(self) -> tuple:
        key = self.key if self.key is not None else self.rounds
        return (self.op, self.algorithm, self.group_size, self.channels, key)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, TransferPlan) or hash(self) != hash(other):
            return False
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        cached = self.__dict__.get("_hash")
        if cached is None:  # computed once, when first asked (plans key many caches)
            cached = hash(self._identity())
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def steps(self) -> int:
        return 1 + max((r.step for r in self.rounds), default=-1)

    @property
    def messages(self) -> int:
        """How many point-to-point messages the plan sends."""
        return sum(len(r) for r in self.rounds)

    @property
    def sends(self) -> bool:
        """Whether the plan sends any message (a group of one sends none): asked without
        expanding :attr:`transfers`, which for a ring over hundreds of ranks holds
        hundreds of thousands of records."""
        return any(len(r) for r in self.rounds)

    @cached_property
    def transfers(self) -> tuple[Transfer, ...]:
        """Every message on its own, in issue order (``deps`` as :class:`Transfer` says)."""
        out: list[Transfer] = []
        # (channel, flow, rank) -> receipts since its last send, and what that send waited for
        since: dict[tuple[int, int, int], list[int]] = {}
        waited: dict[tuple[int, int, int], tuple[int, ...]] = {}
        for r in self.rounds:
            first = len(out)
            for i, (src, dst) in enumerate(zip(r.src, r.dst, strict=True)):
                deps: tuple[int, ...] = ()
                if r.wait:
                    at = (r.channel, r.flow, src)
                    fresh = since.pop(at, None)
                    deps = tuple(fresh) if fresh else waited.get(at, ())
                    waited[at] = deps
                    for flow in r.after:  # the other flows' receipts so far
                        deps += tuple(since.get((r.channel, flow, src), ()))
                out.append(Transfer(r.step, src, dst, r.nbytes(i), deps, r.channel))
            for index in range(first, len(out)):  # receipts count once the round is sent
                since.setdefault((r.channel, r.flow, out[index].dst), []).append(index)
        return tuple(out)

    @cached_property
    def flows(self) -> int:
        """How many flows a channel has (:class:`Round`)."""
        return 1 + max((max((r.flow, *r.after)) for r in self.rounds), default=0)

    def bytes_sent(self, rank: int) -> int:
        return self.bytes_by_rank[rank]

    @cached_property
    def bytes_by_rank(self) -> tuple[int, ...]:
        """Bytes every rank sends, in rank order."""
        sent = np.zeros(self.group_size, dtype=np.int64)
        cache: dict[int, Any] = {}
        for r in self.rounds:
            src, _, nbytes = r.arrays(cache)
            np.add.at(sent, src, nbytes)
        return tuple(int(b) for b in sent)
