"""``PAIR``: a forward and a backward of two micro-batches run overlapped, DualPipe's ``F&B``.

DeepSeek-V3 (DeepSeek-AI 2024, sec. 3.2.1, fig. 4) runs a forward chunk and a
backward chunk of another micro-batch together, each cut into attention,
dispatch, MLP and combine, so that one chunk's all-to-alls and pipeline sends
run while the other computes. A GPU still runs one kernel stream at a time --
DualPipe gives the communication its own SMs, not the other chunk -- so the
pair's compute is the *sum* of its halves', and what it saves is the
communication it hides.

With ``ep_overlap`` ``fb`` or ``both`` the runtime does just that: the two
halves run as two processes that take turns on the worker's compute stream (a
SimPy resource, :attr:`~simulator.runtime.workers.SimWorker.stream`); while
one waits for a collective or an all-to-all, the other computes. A wait is
exposed communication only where the other half was not computing: the
stretches are held while the pair runs and recorded, minus the compute, when
it ends. Otherwise the halves run one after the other. Either way the pair's
products are sent when it ends, as DualPipe sends them.
"""

from __future__ import annotations

from typing import Any

import simpy

from ..engine import Process
from .intervals import union
from .workers import SimWorker


class Pairs:
    """The ``PAIR`` instruction; ``compute`` runs one half (the ``COMPUTE`` handler)."""

    def __init__(self, env: simpy.Environment, compute: Any, overlap: bool) -> None:
        self.env = env
        self.compute = compute
        self.overlap = overlap

    def __call__(self, sw: SimWorker, ins: tuple) -> Process:
        _, first, second = ins
        if not self.overlap:
            for half in (first, second):
                yield from self._run(sw, half)
            return
        sw.stream = simpy.Resource(self.env, capacity=1)
        sw.held = ([], [])
        try:
            halves = [self.env.process(self._run(sw, half)) for half in (first, second)]
            yield simpy.AllOf(self.env, halves)
        finally:
            waits, computed = sw.held
            sw.stream = None
            sw.held = None
        sw.expose_all(without(union(waits), union(computed)))

    def _run(self, sw: SimWorker, ins: tuple) -> Process:
        waits = self.compute(sw, ins)
        if waits is None:
            return
        if isinstance(waits, simpy.Event):
            yield waits
        else:
            yield from waits


def without(
    spans: list[tuple[float, float]], holes: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The parts of the sorted, disjoint ``spans`` outside the sorted, disjoint ``holes``."""
    out = []
    for start, end in spans:
        for lo, hi in holes:
            if hi <= start or lo >= end:
                continue
            if lo > start:
                out.append((start, lo))
            start = max(start, hi)
        if end > start:
            out.append((start, end))
    return out
