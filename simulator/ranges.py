"""The numbers a key or flag allows: one rule for scenario keys, flags and Python arguments.

A scenario key such as ``dp``, a command-line flag such as ``--stages`` and the
same argument given in Python are all checked by one :class:`Range`, so they
get the same answer and the same one-line message. The dataclasses of the
configuration (:class:`~simulator.parallel.strategy.Strategy`, the model
configs, the faults) attach a ``Range`` to each numeric field's metadata;
:mod:`simulator.keys` reads it from there, for the scenario schema and for the
dataclasses' own checks.
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
        hi_open: exclude ``hi`` itself (``[0, 1)`` for a probability that must leave
            something).
        integer: integers only (a float such as ``2.0`` is refused: a scenario
            that writes ``dp = 2.0`` has a typo somewhere).
        inf: ``+inf`` is allowed beyond ``hi`` (a free link: ``bandwidth_gbs = inf``).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    inf: bool = False

    def describe(self) -> str:
        """What the range allows, in words: ``an integer in [1, 4096]``."""
        kind = "an integer" if self.integer else "a number"
        lo = "" if self.lo is None else _number(self.lo)
        hi = "" if self.hi is None else _number(self.hi)
        if self.lo is not None and self.hi is not None:
            ends = ("(" if self.lo_open else "[", ")" if self.hi_open else "]")
            text = f"{kind} in {ends[0]}{lo}, {hi}{ends[1]}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {lo}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.hi_open else '<='} {hi}"
        else:
            text = f"a finite {kind[2:].strip()}" if not self.integer else kind
        return text + (" or inf" if self.inf else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else ``"must be ..., got ..."``."""
        return None if self.allows(value) else f"must be {self.describe()}, got {value!r}"

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one of the numbers the range allows."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if isinstance(value, float):
            if self.integer or math.isnan(value):
                return False
            if math.isinf(value):
                return self.inf and value > 0
        lo, hi = self.lo, self.hi
        if lo is not None and (value < lo or (self.lo_open and value == lo)):
            return False
        return hi is None or value < hi or (value == hi and not self.hi_open)


def _number(x: float) -> str:
    if isinstance(x, int) and abs(x) >= 1e6:  # an exact bound: 2^40, not 1.09951e+12
        return f"2^{x.bit_length() - 1}" if x > 0 and x & (x - 1) == 0 else f"{x:,}"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e6 else f"{x:g}"
