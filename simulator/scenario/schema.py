"""Checking TOML tables against schemas derived from dataclasses.

A schema is a dict ``key -> Key``: the TOML types a value may have, what it
means, and which values it allows (a :class:`~simulator.scenario.limits.Range` for
numbers, applied to every element of a list too; choices, possibly read from
a registry; a free-form check). :func:`keys_of` derives one from a dataclass:
field names and annotations give the keys and types, each field's metadata
(``doc``, ``range``, ``choices``, ``check``) the rest, so the class that
consumes the values is the one place they are described. :class:`Reader`
checks a parsed table against a schema and reports the first problem as one
:class:`~simulator.errors.ScenarioError` line naming the file, the table, the
key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ScenarioError
from ..ranges import Range

#: Longest string value (names, presets, paths).
MAX_STRING_CHARS = 1024


@dataclass(frozen=True)
class Key:
    """One allowed key: its TOML types, what it means and which values it allows.

    Attributes:
        kind: Python types the TOML value may have (``list`` for one value per stage).
        doc: what the key means.
        range: the numbers allowed, for a number and for every element of a list.
        choices: the values allowed, or a function returning them (a registry).
        check: ``value -> None`` when allowed, else what is wrong (``must be ..., got ...``).
        items: types of a list's elements.
    """

    kind: tuple[type, ...]
    doc: str
    range: Range | None = None
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    check: Callable[[Any], str | None] | None = None
    items: tuple[type, ...] = ()

    @classmethod
    def of(cls, kind: type | tuple[type, ...], doc: str, **rules: Any) -> Key:
        """A key of one type or several: ``Key.of(int, "steps", range=...)``."""
        return cls(kind if isinstance(kind, tuple) else (kind,), doc, **rules)

    def allowed(self) -> tuple[Any, ...] | None:
        """The choices, read from their registry now."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def keys_of(cls: type) -> dict[str, Key]:
    """The schema of a dataclass: one :class:`Key` per field.

    Types come from the annotations (``float`` accepts integers too; a tuple
    or list annotation accepts a TOML list), the rest from each field's
    metadata: ``doc``, ``range`` (default: any finite number, any integer),
    ``choices`` (values or a function returning them), ``check``.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kinds, items = _toml_types(hints[f.name])
        numeric = [k for k in (*kinds, *items) if k in (int, float)]
        default_range = None
        if numeric:
            default_range = Range(integer=float not in numeric)
        out[f.name] = Key(
            kinds,
            f.metadata.get("doc", f.name.replace("_", " ")),
            range=f.metadata.get("range", default_range),
            choices=f.metadata.get("choices"),
            check=f.metadata.get("check"),
            items=items,
        )
    return out


def _toml_types(hint: Any) -> tuple[tuple[type, ...], tuple[type, ...]]:
    """TOML value types and list element types for a dataclass field annotation."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds: list[type] = []
    items: list[type] = []
    for a in typing.get_args(hint) if is_union else (hint,):
        origin = typing.get_origin(a) or a
        if origin in (tuple, list):
            kinds.append(list)
            items += [t for arg in typing.get_args(a) if arg is not Ellipsis for t in _scalar(arg)]
        elif a is not type(None):
            kinds += _scalar(a)
    return tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(items))


def _scalar(t: type) -> list[type]:
    return [int, float] if t is float else [t]


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
        if not key.items:
            self._one(value, where, key, key.kind)
        elif isinstance(value, list):
            # one rule for a number and for every element of a list of them
            for i, x in enumerate(value):
                self._one(x, f"{where}[{i}]", key, key.items)
        else:
            self._one(value, where, key, tuple(k for k in key.kind if k is not list))

    def _one(self, value: Any, where: str, key: Key, kinds: tuple[type, ...]) -> None:
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise self.fail(f"{where} must be {_kinds_text(key, kinds)}, got {show(value)}")
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise self.fail(
                f"{where} is {len(value):,} characters long; at most {MAX_STRING_CHARS} allowed"
            )
        allowed = key.allowed()
        if allowed is not None and value not in allowed:
            raise self.fail(
                f"{where} must be one of {', '.join(map(repr, allowed))}, got {show(value)}"
            )
        if key.check is not None:
            problem = key.check(value)
            if problem:
                raise self.fail(f"{where} {problem}")
        if (
            key.range is not None
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            problem = key.range.problem(value)
            if problem:
                raise self.fail(f"{where} {problem}")


def _kinds_text(key: Key, kinds: tuple[type, ...]) -> str:
    """``an integer``, ``a number``, ``a number or a list of numbers`` ..."""
    if kinds != key.kind:  # an element of a list
        return _type_names(kinds)
    if key.items:
        items = _type_names(key.items).replace("an integer", "integers")
        items = items.replace("a number", "numbers")
        return f"{_type_names(tuple(k for k in kinds if k is not list))} or a list of {items}"
    return _type_names(kinds)


def _type_names(kinds: tuple[type, ...]) -> str:
    if int in kinds and float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def show(value: Any) -> str:
    """A value for a one-line message: tables and lists summarised, long text cut."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
