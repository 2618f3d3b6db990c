"""The contract between the runtime and a data-parallel variant.

The runtime runs pipelines; keeping replicas in agreement is a variant's job
-- DDP and ZeRO (:class:`~simulator.runtime.data.ddp.DataParallel`),
``nn.DataParallel`` (:class:`~simulator.runtime.data.replicated.Replicated`). A
variant plugs in through these few methods and nothing else: it charges the
model state before the first step, hears the tape's marks while backward
runs (if it wants them), and handles its own instructions -- ``SYNC`` and
``STEP`` of every program, or ``nn.DataParallel``'s whole step. It is built
from the parts of the run it uses (:mod:`simulator.runtime.data`): it meets the
other replicas through the :class:`~simulator.runtime.meetings.Meetings` and
spends compute time through the :class:`~simulator.runtime.replay.Replay`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ...engine import Process
from ...ops.tape import Mark
from ...parallel.program import Op
from ..workers import SimWorker


class DataParallelSync(Protocol):
    """What a data-parallel variant offers the runtime (see the module docstring)."""

    #: whether the runtime must keep the tape's marks (they cost replay time)
    wants_marks: bool

    def allocate_model_state(self) -> None:
        """Charge parameters, gradients and optimizer state to every worker's ledger."""

    def start_step(self, sw: SimWorker) -> None:
        """``sw`` starts a step: its program runs next."""

    def on_mark(self, sw: SimWorker, mark: Mark) -> Process | None:
        """React to a mark of a replayed tape; a process when that takes time."""

    def handlers(self) -> dict[Op, Callable[[SimWorker, tuple], Any]]:
        """The instructions this variant runs, by opcode."""
