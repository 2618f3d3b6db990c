"""Programs are data: the instructions one worker runs in one training step.

A strategy lowers to one list of instructions per worker (DESIGN.md, key
decision 4). The runtime (:mod:`simulator.runtime`) executes them; printing a
program shows exactly what a worker does and in which order.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pipeline.actions import Action


@dataclass(frozen=True)
class Compute:
    """Run a pipeline action: ``F``, ``B`` or ``W`` of one chunk and micro-batch.

    ``fused`` backward (schedules without a B/W split) runs B and W together.
    """

    action: Action
    fused: bool = True

    def __str__(self) -> str:
        return (
            str(self.action) if not self.fused or self.action.kind != "B" else f"{self.action}(+W)"
        )


@dataclass(frozen=True)
class Send:
    """Send ``what`` (``activation`` or ``gradient``) of a chunk and micro-batch to ``peer``."""

    what: str
    chunk: int
    mb: int
    peer: int

    def __str__(self) -> str:
        return f"send {self.what} {self.chunk}/{self.mb} -> w{self.peer}"


@dataclass(frozen=True)
class Recv:
    """Wait for ``what`` of a chunk and micro-batch from ``peer``."""

    what: str
    chunk: int
    mb: int
    peer: int

    def __str__(self) -> str:
        return f"recv {self.what} {self.chunk}/{self.mb} <- w{self.peer}"


@dataclass(frozen=True)
class SyncGrads:
    """Make the gradients of all data-parallel replicas agree (all-reduce and the like)."""

    def __str__(self) -> str:
        return "sync grads"


@dataclass(frozen=True)
class OptimizerStep:
    """Update the parameters this worker owns, then zero the gradients."""

    def __str__(self) -> str:
        return "optimizer step"


Instruction = Compute | Send | Recv | SyncGrads | OptimizerStep
