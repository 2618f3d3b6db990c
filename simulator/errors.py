"""Errors a user can cause, each with one message that names the problem and the fix.

Every error the simulator raises on purpose derives from :class:`SimulatorError`.
The command line catches exactly this family, prints ``error: <message>`` on one
line and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class: a problem with the input, reported in one line."""


class ScenarioError(SimulatorError):
    """A scenario file (or the equivalent Python objects) is invalid."""


class ConfigError(ScenarioError, ValueError):
    """An argument of the Python API is not allowed: the wrong type or outside its range.

    Every configuration class (``Strategy``, ``TrainingConfig``, the model
    configs, the faults, ``Limits``, the planner's ``SearchSpace``) and every
    entry point (``run_strategy``, ``run_scenario``, ``plan``, ``sweep``)
    checks its arguments with the rules the scenario schema uses
    (:mod:`simulator.keys`). The message names the class or function, the
    parameter and what is allowed; ``parameter`` and ``allowed`` keep them
    for callers. It is a ``ValueError`` too, so ``except ValueError`` also
    catches it.
    """

    def __init__(self, message: str, parameter: str = "", allowed: str = "") -> None:
        super().__init__(message)
        self.parameter = parameter
        self.allowed = allowed


class UsageError(SimulatorError):
    """A command line the parser cannot read: an unknown flag, a value of the wrong type."""


class LayoutError(SimulatorError):
    """A parallel layout is impossible: sizes that do not divide, too many devices, ..."""


class ScheduleError(SimulatorError):
    """A pipeline schedule is malformed; the message shows the rank x step grid."""


class LimitError(SimulatorError):
    """An input would exceed a resource limit (:class:`simulator.scenario.limits.Limits`).

    The message names the limit, the value, the key it came from and how to
    raise the limit; ``limit`` and ``value`` keep the numbers for callers.
    """

    def __init__(self, message: str, limit: str = "", value: float = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


class OutputError(SimulatorError):
    """An output folder cannot be created or written; found before any simulation runs."""


class DeadlockError(SimulatorError):
    """The simulation cannot make progress; the message says what every worker waits for."""


class OutOfMemoryError(SimulatorError):
    """A device needs more memory than it has.

    Attributes:
        device: index of the device that overflowed first.
        request: ``(tag, bytes)`` of the allocation that crossed the capacity.
        breakdown: bytes by category on that device at its peak.
        capacity: the device's memory in bytes.
    """

    def __init__(
        self,
        message: str,
        device: int,
        request: tuple[str, int],
        breakdown: dict[str, int],
        capacity: int,
    ) -> None:
        super().__init__(message)
        self.device = device
        self.request = request
        self.breakdown = breakdown
        self.capacity = capacity


class DivergedError(SimulatorError):
    """The loss became NaN or infinite; ``step`` is the training step it happened at."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class DeviceFailedError(SimulatorError):
    """A device failed during the run (a ``[[fault]] kind = "fail"``); the message names it,
    the time, every worker left waiting and the work lost."""

    def __init__(self, message: str, device: int, time: float) -> None:
        super().__init__(message)
        self.device = device
        self.time = time
