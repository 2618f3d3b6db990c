"""The command line: ``python -m simulator COMMAND ...``.

Every module in :mod:`simulator.commands` is a subcommand: it provides
``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args) -> int``. Problems with the input raise
:class:`~simulator.errors.SimulatorError`; they are printed as one
``error: ...`` message on standard error with exit status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import NoReturn

from . import commands
from .errors import SimulatorError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors (a flag that is not a number, a missing argument) raised
    as :class:`~simulator.errors.UsageError` and so printed as every other error is: one
    ``error:`` line, exit status 2. (argparse's own form prints the usage first.)"""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m simulator",
        description="Simulate data, tensor, pipeline and hybrid parallel training on "
        "virtual devices.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")  # the command line only writes files: no window, no display
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except SimulatorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: the reader has all it wanted
        sys.stderr.close()
        return 0
