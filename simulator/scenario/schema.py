"""Checking TOML tables against schemas derived from dataclasses.

A schema is a dict ``key -> Key`` (:class:`simulator.keys.Key`): the TOML types
a value may have, what it means, and which values it allows.
:func:`~simulator.keys.keys_of` derives one from a dataclass, so the class
that consumes the values is the one place they are described, and the class
checks the same rules when Python code builds it. :class:`Reader` checks a
parsed table against a schema and reports the first problem as one
:class:`~simulator.errors.ScenarioError` line naming the file, the table, the
key and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..errors import ScenarioError
from ..keys import MAX_STRING_CHARS as MAX_STRING_CHARS
from ..keys import Key as Key
from ..keys import join
from ..keys import keys_of as keys_of
from ..keys import show as show


class Reader:
    """Checks tables against a schema, with the file name in every message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {message}")

    def table(self, data: Any, where: str, schema: Mapping[str, Key]) -> dict[str, Any]:
        """Check the table ``data`` (``where`` names it; "" for the top level)."""
        if not isinstance(data, dict):
            raise self.fail(f"{where} must be a table, got {show(data)}")
        for key, value in data.items():
            if key not in schema:
                close = difflib.get_close_matches(key, list(schema), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(
                    f"unknown key {show(key)} {'in ' + where if where else 'at the top level'}"
                    f"{hint}; allowed: {', '.join(schema)}"
                )
            self.value(value, f"{where} {key}" if where else key, schema[key])
        return data

    def value(self, value: Any, where: str, key: Key) -> None:
        """Check one value (``where`` names it) against ``key``."""
        problem = key.problem(value)
        if problem:
            raise self.fail(join(where, problem))
