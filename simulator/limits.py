"""Bounds on what an input may ask for: allowed ranges of numbers and resource limits.

A simulator that takes its sizes from a file must not let a typo cost an
hour or all the memory of the machine: ``steps = 1000000000`` or
``chunks = 1000000`` should fail at once, with a message, before anything is
built. Two kinds of bound live here.

* :class:`Range` is the set of values a number may take (a key of a scenario
  file or a command-line flag): integer or real, a lower and an upper end,
  and whether ``inf`` is meaningful (an infinitely fast link is; an
  infinitely long latency is not). NaN is never allowed. Scenario keys and
  command-line flags are checked by the same rule, so ``--stages 0`` and
  ``pp = 0`` get the same answer.
* :class:`Limits` caps the resources a run may use. The defaults let every
  shipped scenario and notebook run and stop the inputs that would run for
  minutes or exhaust memory; a user who really wants a bigger run raises
  a limit in the scenario's ``[limits]`` table, or with the command's
  ``--max-...`` flag. Going past a limit raises :class:`~simulator.errors.LimitError`,
  whose one-line message names the limit, the value, the key it came from,
  and how to raise it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import LimitError, SimulatorError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Range:
    """The numbers a key or flag allows: ``[lo, hi]``, ``(lo, hi]`` when ``lo_open``.

    Attributes:
        lo, hi: the ends (None: unbounded on that side).
        lo_open: exclude ``lo`` itself (``(0, 1]`` for a fraction).
        integer: integers only (a float such as ``2.0`` is refused: a scenario
            that writes ``dp = 2.0`` has a typo somewhere).
        inf: ``+inf`` is allowed beyond ``hi`` (a free link: ``bandwidth_gbs = inf``).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    integer: bool = False
    inf: bool = False

    def describe(self) -> str:
        """What the range allows, in words: ``an integer in [1, 4096]``."""
        kind = "an integer" if self.integer else "a number"
        lo = "" if self.lo is None else _number(self.lo)
        hi = "" if self.hi is None else _number(self.hi)
        if self.lo is not None and self.hi is not None:
            text = f"{kind} in {'(' if self.lo_open else '['}{lo}, {hi}]"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {lo}"
        elif self.hi is not None:
            text = f"{kind} <= {hi}"
        else:
            text = f"a finite {kind[2:].strip()}" if not self.integer else kind
        return text + (" or inf" if self.inf else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else ``"must be ..., got ..."``."""
        wrong = f"must be {self.describe()}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return wrong
        if self.integer and not isinstance(value, int):
            return wrong
        if isinstance(value, float):
            if math.isnan(value):
                return wrong
            if math.isinf(value):
                return None if self.inf and value > 0 else wrong
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return wrong
        if self.hi is not None and value > self.hi:
            return wrong
        return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e6 else f"{x:g}"


#: Every limit is a positive integer (Python ints: no upper end).
LIMIT_RANGE = Range(lo=1, integer=True)


def _limit(default: int, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc, "range": LIMIT_RANGE})


@dataclass(frozen=True)
class Limits:
    """Resource limits, checked before anything is built (see the module docstring).

    Attributes:
        max_events: simulated events (kernels, messages, collective steps) of
            one strategy's run, as estimated before it starts. SimPy handles
            some 10^5 events a second, so the default is a run of a minute or two.
        max_devices: devices one strategy uses (``dp * tp * pp``); the cluster
            itself may be larger, unused devices cost nothing.
        max_steps: training steps of a run.
        max_microbatches: micro-batches per replica per step.
        max_stages: pipeline model stages, ``pp * chunks`` (also the ranks and
            chunks of a schedule the ``schedule`` command prints).
        max_blocks: pipeline blocks of the model (``layers`` of an MLP,
            ``layers + 2`` of a GPT, ``stages`` of an abstract model).
        max_file_bytes: size of a scenario file or a schedule CSV.
        max_sweep_points: points of a sweep (message sizes of ``collective``,
            layouts of a planner sweep).
        max_numerics_bytes: estimated host memory of the real arrays of a run
            with ``numerics = true`` (see :func:`simulator.scenario.numerics_bytes`);
            shape-only runs hold no arrays.
    """

    max_events: int = _limit(10_000_000, "simulated events of one run")
    max_devices: int = _limit(65_536, "devices one strategy uses")
    max_steps: int = _limit(10_000, "training steps")
    max_microbatches: int = _limit(4_096, "micro-batches per replica per step")
    max_stages: int = _limit(4_096, "pipeline model stages, pp * chunks")
    max_blocks: int = _limit(4_096, "pipeline blocks of the model")
    max_file_bytes: int = _limit(16 * MiB, "bytes of a scenario or schedule file")
    max_sweep_points: int = _limit(1_000, "points of a sweep")
    max_numerics_bytes: int = _limit(4 * GiB, "host memory of a numerics run's arrays")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = LIMIT_RANGE.problem(getattr(self, f.name))
            if problem:
                raise SimulatorError(f"limit {f.name} {problem}")

    def check(self, name: str, value: int, key: str, flag: bool = True, table: bool = True) -> None:
        """Raise :class:`LimitError` when ``value`` (from ``key``) is over limit ``name``.

        ``key`` says where the value came from (``[training] steps``,
        ``--stages``). The message says how to raise the limit: with the
        command's ``--max-...`` flag (``flag``) and/or a scenario's
        ``[limits]`` table (``table``).
        """
        limit = getattr(self, name)
        if value <= limit:
            return
        ways = []
        if flag:
            ways.append(f"--{name.replace('_', '-')} N")
        if table:
            ways.append(f"{name} = N in the scenario's [limits] table")
        raise LimitError(
            f"{key} = {value:,} is over the limit {name} = {limit:,}; if you mean it, raise "
            f"the limit with {' or '.join(ways)}",
            name,
            value,
        )


def limit_names() -> tuple[str, ...]:
    """The fields of :class:`Limits`, the keys of a ``[limits]`` table."""
    return tuple(f.name for f in dataclasses.fields(Limits))


def add_limit_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add ``--max-... N`` flags for the limits ``names`` to a command's parser."""
    defaults = Limits()
    for name in names:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_int_flag,
            metavar="N",
            help=f"limit on {Limits.__dataclass_fields__[name].metadata['doc']} "
            f"({getattr(defaults, name):,})",
        )


def limit_flags(args: argparse.Namespace) -> dict[str, int]:
    """The ``--max-...`` flags given in ``args``, as ``{limit name: value}``.

    Pass them to ``dataclasses.replace(Limits(), **flags)``, or to
    :func:`simulator.scenario.load_scenario`, where they override the
    scenario's ``[limits]`` table.
    """
    flags = {}
    for name in limit_names():
        value = getattr(args, name, None)
        if value is not None:
            check_flag(value, f"--{name.replace('_', '-')}", LIMIT_RANGE)
            flags[name] = value
    return flags


def check_flag(value: Any, flag: str, allowed: Range) -> None:
    """Raise :class:`SimulatorError` when a command-line flag's value is outside ``allowed``."""
    problem = allowed.problem(value)
    if problem:
        raise SimulatorError(f"{flag} {problem}")


def _int_flag(text: str) -> int:
    """argparse type for integer flags (ranges are checked afterwards, by :func:`check_flag`)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
