"""Resource limits: what one input may ask the simulator to do.

A simulator that takes its sizes from a file must not let a typo cost an
hour or all the memory of the machine: ``steps = 1000000000`` or
``chunks = 1000000`` should fail at once, with a message, before anything is
built. :class:`Limits` caps the resources a run may use. The defaults let
every shipped scenario and notebook run and stop the inputs that would run
for minutes or exhaust memory; a user who really wants a bigger run raises a
limit in the scenario's ``[limits]`` table, or with the command's
``--max-...`` flag. Going past a limit raises
:class:`~simulator.errors.LimitError`, whose one-line message names the
limit, the value, the key it came from, and how to raise it. (The allowed
values of a single key are :class:`~simulator.ranges.Range`.)
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, LimitError, SimulatorError
from ..keys import check_fields
from ..ranges import Range

MiB = 1 << 20
GiB = 1 << 30


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
            with ``numerics = true`` (see :func:`simulator.scenario.parse.numerics_bytes`);
            shape-only runs hold no arrays.
        max_strategies: strategies of one scenario (each is planned and run).
        max_chunks_per_rank: model chunks per pipeline rank, of a strategy or of the
            planner's search (``max_chunks``).
        max_width: the widest dimension of a layer (an MLP's ``width``; a GPT's
            ``hidden``, ``vocab`` and ``seq_len``): a shape-only run holds no
            arrays, but its shapes must still be counted in 64-bit integers.
        max_toml_depth: nesting of tables and lists in a TOML file (a parser
            recurses once per level). The file is read before its ``[limits]``
            table, so only the ``--max-toml-depth`` flag raises it.
        max_integer_digits: digits of an integer in a TOML file (Python refuses
            to convert more than 4,300); a flag, like ``max_toml_depth``.
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
    max_strategies: int = _limit(1_000, "strategies of one scenario")
    max_chunks_per_rank: int = _limit(64, "model chunks per pipeline rank")
    max_width: int = _limit(1 << 20, "widest dimension of a layer")
    max_toml_depth: int = _limit(32, "nesting of tables and lists in a TOML file")
    max_integer_digits: int = _limit(100, "digits of an integer in a TOML file")

    def __post_init__(self) -> None:
        check_fields(self)  # every limit a positive integer (raises ConfigError)

    def check(
        self,
        name: str,
        value: int,
        key: str,
        flag: bool = True,
        table: bool = True,
        python: bool = False,
    ) -> None:
        """Raise :class:`LimitError` when ``value`` (from ``key``) is over limit ``name``.

        ``key`` says where the value came from (``[training] steps``,
        ``--stages``). The message says how to raise the limit: with the
        command's ``--max-...`` flag (``flag``) and/or a scenario's
        ``[limits]`` table (``table``), or, for a Python caller (``python``),
        with the function's ``limits`` argument.
        """
        limit = getattr(self, name)
        if value <= limit:
            return
        ways = []
        if python:
            ways.append(f"the argument limits={{{name!r}: N}}")
        elif flag:
            ways.append(f"--{name.replace('_', '-')} N")
        if table and not python:
            ways.append(f"{name} = N in the scenario's [limits] table")
        raise LimitError(
            f"{key} = {value:,} is over the limit {name} = {limit:,}; if you mean it, raise "
            f"the limit with {' or '.join(ways)}",
            name,
            value,
        )


def raised(owner: str, limits: Any) -> dict[str, int]:
    """The limits a Python caller raises, as ``{name: value}``: from a mapping such as
    ``{"max_steps": 100000}`` or from a :class:`Limits` (all of its values). Raises
    :class:`~simulator.errors.ConfigError` for an unknown name or a value that is not a
    positive integer."""
    if limits is None:
        return {}
    if isinstance(limits, Limits):
        return dataclasses.asdict(limits)
    if not isinstance(limits, Mapping):
        raise ConfigError(
            f"{owner}: limits must be a Limits or a mapping such as {{'max_steps': 100000}}, "
            f"got {type(limits).__name__}",
            "limits",
            "Limits or a mapping",
        )
    names = limit_names()
    for name in limits:
        if name not in names:
            raise ConfigError(
                f"{owner}: limits has no {name!r}; the limits are {', '.join(names)}",
                "limits",
                ", ".join(names),
            )
    return dataclasses.asdict(Limits(**limits))


#: Limits on reading a file, which the file's own ``[limits]`` table comes too late to raise.
FILE_LIMITS = ("max_toml_depth", "max_integer_digits")


def limit_names() -> tuple[str, ...]:
    """The fields of :class:`Limits` (every one has a ``--max-...`` flag)."""
    return tuple(f.name for f in dataclasses.fields(Limits))


def table_limits() -> tuple[str, ...]:
    """The keys of a ``[limits]`` table: every limit but :data:`FILE_LIMITS`."""
    return tuple(name for name in limit_names() if name not in FILE_LIMITS)


def add_limit_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Add ``--max-... N`` flags for the limits ``names`` to a command's parser."""
    defaults = Limits()
    for name in names:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=int_flag,
            metavar="N",
            help=f"limit on {Limits.__dataclass_fields__[name].metadata['doc']} "
            f"({getattr(defaults, name):,})",
        )


def limit_flags(args: argparse.Namespace) -> dict[str, int]:
    """The ``--max-...`` flags given in ``args``, as ``{limit name: value}``.

    Pass them to ``dataclasses.replace(Limits(), **flags)``, or to
    :func:`simulator.scenario.parse.load_scenario`, where they override the
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


def int_flag(text: str) -> int:
    """argparse type for integer flags (ranges are checked afterwards, by :func:`check_flag`).

    ASCII digits only: Python's ``int`` also reads ``"١"`` (an Arabic-Indic one) as 1,
    which no one means on a command line."""
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number_flag(text: str) -> float:
    """argparse type for number flags: ASCII only, as :func:`int_flag`."""
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
