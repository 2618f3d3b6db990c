"""Writing a collective down as it runs: :class:`PlanBuilder`.

Every algorithm records the messages it sends on a builder, which turns them
into a :class:`~simulator.transfer.TransferPlan` (the leaf type the engine
times; see :mod:`simulator.transfer`).
"""

from __future__ import annotations

import weakref

from ..transfer import Transfer, TransferPlan


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

    def build(self) -> TransferPlan:
        """The plan; equal plans come back as one shared object, so that caches keyed
        by plans (the engine times a plan once per group of devices) compare them by
        identity instead of message by message."""
        plan = TransferPlan(self.op, self.algorithm, self.group_size, tuple(self.transfers))
        return _INTERNED.setdefault(plan, plan)


_INTERNED: weakref.WeakValueDictionary[TransferPlan, TransferPlan] = weakref.WeakValueDictionary()
