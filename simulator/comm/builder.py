"""Writing a collective down as it runs: :class:`PlanBuilder`.

Every algorithm records the messages it sends on a builder, one round (the
messages of one step of one channel) at a time, and the builder turns them
into a :class:`~simulator.transfer.TransferPlan` (the leaf type the engine
times; see :mod:`simulator.transfer`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from ..transfer import Round, TransferPlan


class PlanBuilder:
    """Collects rounds while an algorithm runs; see :mod:`simulator.comm`."""

    def __init__(self, op: str, algorithm: str, group_size: int, channels: int = 1) -> None:
        self.op = op
        self.algorithm = algorithm
        self.group_size = group_size
        self.channels = channels
        self.rounds: list[Round] = []

    def round(
        self,
        step: int,
        src: Sequence[int],
        dst: Sequence[int],
        sizes: Sequence[int],
        shift: int = 0,
        channel: int = 0,
        wait: bool = True,
        flow: int = 0,
        after: tuple[int, ...] = (),
    ) -> None:
        """Record messages ``src[i] -> dst[i]`` of ``sizes[(i + shift) % len(sizes)]`` bytes
        (``flow`` and ``after``: :class:`~simulator.transfer.Round`).

        Pass the same tuple objects for rounds that repeat a pattern (a ring's
        every step): the plan then holds them once.
        """
        if len(src):
            sent = (_ints(src), _ints(dst), _ints(sizes))
            self.rounds.append(Round(step, *sent, shift, channel, wait, flow, after))

    def send(self, step: int, src: int, dst: int, nbytes: int, channel: int = 0) -> None:
        """Record a single message as a round of its own."""
        self.round(step, (src,), (dst,), (int(nbytes),), channel=channel)

    def build(self, key: Any = None) -> TransferPlan:
        """The plan; ``key`` names it (see :class:`~simulator.transfer.TransferPlan`)."""
        return TransferPlan(
            self.op, self.algorithm, self.group_size, tuple(self.rounds), self.channels, key
        )


def _ints(values: Sequence[int]) -> tuple[int, ...]:
    """A tuple of ints, passed through when it already is one (so that rounds share it)."""
    return values if isinstance(values, tuple) else tuple(int(v) for v in values)


def interned(plan: TransferPlan) -> TransferPlan | None:
    """The shared object of the plans equal to ``plan`` (equal keys), if there is one: a
    plan with only its key says which, before its messages are worked out."""
    return _INTERNED.get(plan)


def intern(plan: TransferPlan) -> TransferPlan:
    """One shared object per distinct plan: a plan's expanded transfers and byte counts
    are worked out once however often the collective runs (numerics runs it with new
    arrays every micro-batch), and caches keyed by plans find them by identity."""
    return _INTERNED.setdefault(plan, plan)


_INTERNED: weakref.WeakValueDictionary[TransferPlan, TransferPlan] = weakref.WeakValueDictionary()
