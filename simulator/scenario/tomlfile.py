"""Reading a TOML file within limits: its size, its nesting and its integers.

Python's TOML parser (:mod:`tomllib`) descends recursively into nested
arrays and inline tables, so ``a = [[[[...]]]]`` five thousand deep ends in
a ``RecursionError``; and it converts integers with ``int()``, which refuses
more than 4,300 digits (a guard against quadratic-time conversion). Neither
is a message a user can act on. So before the parser sees the text, one scan
of it -- strings and comments skipped -- measures how deep the brackets nest
and how long the numbers are, and checks both against
:class:`~simulator.scenario.limits.Limits` (``max_toml_depth``,
``max_integer_digits``); after parsing, the depth of the tables themselves
(dotted keys such as ``a.b.c = 1`` nest without brackets) is checked too.
These limits come from the command line only: the file's own ``[limits]``
table is read after them.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScenarioError
from .limits import Limits
from .paths import read_text

#: Strings and comments: removed before the scan, so brackets and digits inside them
#: do not count.
_TEXT = re.compile(
    r'"""(?:\\[\s\S]|[^\\])*?"""'
    r"|'''[\s\S]*?'''"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'[^'\n]*'"
    r"|#[^\n]*"
)
_NESTING = np.zeros(256, dtype=np.int64)
_NESTING[[ord("["), ord("{")]] = 1
_NESTING[[ord("]"), ord("}")]] = -1


@functools.cache
def _long_number(digits: int) -> re.Pattern[str]:
    """A run of more than ``digits`` digits that starts a number (not inside a bare key,
    not the fraction or exponent of a float)."""
    return re.compile(rf"(?<![\w.])[0-9](?:_?[0-9]){{{digits},}}")


def check_text(text: str, source: str, limits: Limits) -> None:
    """Raise :class:`~simulator.errors.LimitError` when brackets nest deeper than
    ``limits.max_toml_depth`` or a number has more than ``limits.max_integer_digits``
    digits (``source`` names the file). Strings and comments do not count."""
    code = _TEXT.sub("", text)
    # brackets are ASCII: no byte of another character's UTF-8 is one of them
    depth = np.cumsum(_NESTING[np.frombuffer(code.encode("utf-8", "surrogatepass"), np.uint8)])
    deepest = int(depth.max(initial=0))
    where = f"{source}: the nesting of lists and tables"
    limits.check("max_toml_depth", deepest, where, table=False)
    number = _long_number(limits.max_integer_digits).search(code)
    if number:
        digits = len(number[0].replace("_", ""))
        limits.check("max_integer_digits", digits, f"{source}: the digits of a number", table=False)


def check_depth(data: Any, source: str, limits: Limits) -> None:
    """Raise :class:`~simulator.errors.LimitError` when parsed TOML nests tables and lists
    deeper than ``limits.max_toml_depth`` (counted without recursion)."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_toml_depth:
            limits.check("max_toml_depth", depth, f"{source}: the nesting of tables", table=False)
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]


def loads(text: str, source: str, limits: Limits | None = None) -> dict[str, Any]:
    """Parse TOML ``text`` within ``limits`` (see the module docstring); a syntax error is
    one :class:`~simulator.errors.ScenarioError` line naming ``source``. A UTF-8
    byte-order mark (some Windows editors write one) is dropped."""
    limits = limits or Limits()
    text = text.removeprefix("\ufeff")
    check_text(text, source, limits)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{source}: invalid TOML: {err}") from None
    check_depth(data, source, limits)
    return data


def read_toml(path: str | Path, limits: Limits | None = None) -> dict[str, Any]:
    """Read and parse a scenario file: a regular UTF-8 file of at most
    ``limits.max_file_bytes`` (:func:`~simulator.scenario.paths.read_text`), then
    :func:`loads`."""
    limits = limits or Limits()
    text = read_text(path, "scenario file", limits, ScenarioError, table=False)
    return loads(text, str(path), limits)
