"""The numbers a key or flag allows: one rule for scenario keys, flags and Python arguments.

A scenario key such as ``dp``, a command-line flag such as ``--stages`` and the
same argument given in Python are all checked by one :class:`Range`, so they
get the same answer and the same one-line message. The dataclasses of the
configuration (:class:`~simulator.parallel.strategy.Strategy`, the model
configs, the faults) attach a ``Range`` to each numeric field's metadata; the
scenario schema (:mod:`simulator.scenario.schema`) reads it from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


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


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e6 else f"{x:g}"
