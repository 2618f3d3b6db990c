"""One rule per key: the same check for a scenario key and for a Python argument.

A configuration dataclass (:class:`~simulator.parallel.strategy.Strategy`,
:class:`~simulator.parallel.training.TrainingConfig`, the model configs, the
faults, the limits, the planner's search space) states each field's rule once,
in the field's annotation and metadata: its type, what it means (``doc``),
which numbers it allows (``range``, a :class:`~simulator.ranges.Range`, applied
to every element of a list too), which values (``choices``, possibly read from
a registry) and any other rule (``check``). :func:`keys_of` turns the fields
into :class:`Key` objects, and both ways in use them:

* the scenario reader (:mod:`simulator.scenario.schema`) checks a TOML table
  key by key and names the file, the table and the key;
* :func:`check_fields`, called by each dataclass's ``__post_init__``, checks
  the same rules when Python code builds the object, and raises
  :class:`~simulator.errors.ConfigError` naming the class, the parameter and
  what is allowed.

So ``dp = 2.0`` in a file and ``Strategy(dp=2.0)`` in a notebook get the same
answer. Numpy scalars count as the Python numbers they hold (``np.int64(2)``
is an integer and is stored as ``2``); ``True`` is not an integer, and
``2.0`` is not an integer either: a size written as a float has a typo
somewhere.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .ranges import Range

#: Longest string value (names, presets, paths).
MAX_STRING_CHARS = 1024


@dataclass(frozen=True)
class Key:
    """One allowed key: its types, what it means and which values it allows.

    Attributes:
        kind: Python types the value may have (``list`` for one value per stage).
        doc: what the key means.
        range: the numbers allowed, for a number and for every element of a list.
        choices: the values allowed, or a function returning them (a registry).
        check: ``value -> None`` when allowed, else what is wrong (``must be ..., got ...``).
        items: types of a list's elements.
        optional: None is allowed (a Python argument; TOML has no null).
    """

    kind: tuple[type, ...]
    doc: str
    range: Range | None = None
    choices: tuple[Any, ...] | Callable[[], Iterable[Any]] | None = None
    check: Callable[[Any], str | None] | None = None
    items: tuple[type, ...] = ()
    optional: bool = False

    @classmethod
    def of(cls, kind: type | tuple[type, ...], doc: str, **rules: Any) -> Key:
        """A key of one type or several: ``Key.of(int, "steps", range=...)``."""
        return cls(kind if isinstance(kind, tuple) else (kind,), doc, **rules)

    def allowed(self) -> tuple[Any, ...] | None:
        """The choices, read from their registry now."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What the key allows, in words (for a message or a table)."""
        allowed = self.allowed()
        if allowed is not None:
            return "one of " + ", ".join(map(repr, allowed))
        if self.range is not None:
            return self.range.describe()
        return kinds_text(self, self.kind)

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else what is wrong: ``"must be ..., got ..."``,
        or ``"[2] must be ..."`` for the third element of a list."""
        if not self.items:
            return self._one(value, self.kind)
        if isinstance(value, list | tuple):
            # one rule for a number and for every element of a list of them
            for i, x in enumerate(value):
                problem = self._one(x, self.items)
                if problem:
                    return f"[{i}] {problem}"
            return None
        return self._one(value, tuple(k for k in self.kind if k is not list))

    def _one(self, value: Any, kinds: tuple[type, ...]) -> str | None:
        if not _is(value, kinds):
            numbers_only = self.range is not None and set(kinds) <= {int, float}
            allowed = self.range.describe() if numbers_only else kinds_text(self, kinds)
            return f"must be {allowed}, got {show(value)}"
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            return f"is {len(value):,} characters long; at most {MAX_STRING_CHARS} allowed"
        allowed = self.allowed()
        if allowed is not None and not any(_same(value, a) for a in allowed):
            return f"must be one of {', '.join(map(repr, allowed))}, got {show(value)}"
        if self.check is not None:
            problem = self.check(value)
            if problem:
                return problem
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if self.range is not None and numeric:
            return self.range.problem(value)
        return None


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    """``value`` has one of the TOML types ``kinds`` (a bool is not a number; a tuple is a list)."""
    if isinstance(value, bool):
        return bool in kinds
    if list in kinds and isinstance(value, tuple):
        return True
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _same(value: Any, choice: Any) -> bool:
    """Equal, and a bool only to a bool: ``1`` is not the choice ``True``."""
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


def join(where: str, problem: str) -> str:
    """``"dp"`` and ``"must be ..."`` -> ``"dp must be ..."``; ``"[2] must ..."`` attaches."""
    return f"{where}{problem}" if problem.startswith("[") else f"{where} {problem}"


@functools.cache
def keys_of(cls: type) -> dict[str, Key]:
    """The keys of a dataclass: one :class:`Key` per field.

    Types come from the annotations (``float`` accepts integers too; a tuple
    or list annotation accepts a list; ``| None`` makes the key optional for
    Python callers), the rest from each field's metadata: ``doc``, ``range``
    (default: any finite number, any integer), ``choices`` (values or a
    function returning them), ``check``.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kinds, items, optional = _types(hints[f.name])
        numeric = [k for k in (*kinds, *items) if k in (int, float)]
        default_range = Range(integer=float not in numeric) if numeric else None
        out[f.name] = Key(
            kinds,
            f.metadata.get("doc", f.name.replace("_", " ")),
            range=f.metadata.get("range", default_range),
            choices=f.metadata.get("choices"),
            check=f.metadata.get("check"),
            items=items,
            optional=optional,
        )
    return out


def _types(hint: Any) -> tuple[tuple[type, ...], tuple[type, ...], bool]:
    """Value types, list element types and whether None is allowed, for an annotation."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    kinds: list[type] = []
    items: list[type] = []
    optional = False
    for a in typing.get_args(hint) if is_union else (hint,):
        origin = typing.get_origin(a) or a
        if origin in (tuple, list):
            kinds.append(list)
            items += [t for arg in typing.get_args(a) if arg is not Ellipsis for t in _scalar(arg)]
        elif origin in (dict, Mapping):
            kinds.append(dict)
        elif a is type(None):
            optional = True
        else:
            kinds += _scalar(a)
    return tuple(dict.fromkeys(kinds)), tuple(dict.fromkeys(items)), optional


def _scalar(t: type) -> list[type]:
    return [int, float] if t is float else [t]


_PLAIN = frozenset([int, float, str, bool, type(None)])


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as the Python numbers they hold, and a list (of them)
    as a tuple: what a frozen, hashable config keeps."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        return int(value)
    if isinstance(value, np.floating) and not isinstance(value, float):
        return float(value)
    if isinstance(value, list | tuple):
        return tuple(plain(x) for x in value)
    return value


#: Values each class has accepted, as ``(field, type, value)``: a planner builds
#: hundreds of thousands of strategies from a few values each, and a value that
#: passed its rule once passes it again (registries only grow). Bounded, since
#: names differ from strategy to strategy.
_ACCEPTED: dict[type, set[tuple[str, type, Any]]] = {}
_ACCEPTED_MAX = 4096


def check_fields(obj: Any, names: Iterable[str] | None = None) -> None:
    """Check every field of the dataclass ``obj`` (or those ``names``) against its
    :class:`Key` (see the module docstring); numpy scalars become Python numbers and
    lists tuples, in place (frozen dataclasses too). Raises
    :class:`~simulator.errors.ConfigError`."""
    cls = type(obj)
    accepted = _ACCEPTED.setdefault(cls, set())
    keys = keys_of(cls)
    for name, key in keys.items() if names is None else ((n, keys[n]) for n in names):
        value = getattr(obj, name)
        if type(value) in _PLAIN and (name, type(value), value) in accepted:
            continue
        kept = plain(value)
        if kept is not value:
            object.__setattr__(obj, name, kept)
        if kept is None and key.optional:
            continue
        problem = key.problem(kept)
        if problem:
            raise ConfigError(join(f"{cls.__name__}: {name}", problem), name, key.describe())
        if type(kept) in _PLAIN and len(accepted) < _ACCEPTED_MAX:
            accepted.add((name, type(kept), kept))


def check_argument(owner: str, name: str, value: Any, key: Key) -> Any:
    """Check one argument of a function (``owner`` names it) against ``key``; return it as
    :func:`plain` makes it. Raises :class:`~simulator.errors.ConfigError`."""
    kept = plain(value)
    if kept is None and key.optional:
        return None
    problem = key.problem(kept)
    if problem:
        raise ConfigError(join(f"{owner}: {name}", problem), name, key.describe())
    return kept


def _python(value: Any) -> str:
    """A Python argument for a message: numbers and text as written, else its type."""
    if value is None or isinstance(value, bool | int | float | str):
        return show(value)
    return f"a {type(value).__name__}"


def kinds_text(key: Key, kinds: tuple[type, ...]) -> str:
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
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_instance(
    owner: str, name: str, value: Any, kinds: type | tuple[type, ...], hint: str = ""
) -> Any:
    """Raise :class:`~simulator.errors.ConfigError` unless ``value`` is one of ``kinds`` (the
    classes an argument of ``owner`` takes); ``hint`` says how to make one."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if isinstance(value, kinds):
        return value
    names = " or ".join(k.__name__ for k in kinds)
    raise ConfigError(
        f"{owner}: {name} must be a {names}, got {_python(value)}" + (f"; {hint}" if hint else ""),
        name,
        names,
    )
