"""Which blocks trace alike: the keys :mod:`.reuse` files a block's traces under.

In shape-only mode a block's trace depends on its classes, its settings and its
parameters' shapes, and on the shapes of what it is given -- not on its name
or on the seeds of its dropout masks. :func:`block_key` turns a block into a
nested tuple of all it holds, names set aside, and :func:`input_key` its inputs
into their shapes, dtypes and sharing. Two blocks with equal keys, given inputs
with equal keys, record the same tape up to names.

Attributes a class lists in ``value_only`` change only the numbers a
shape-only run never computes (a dropout layer's index, which seeds its masks)
and are left out of the key. Code (functions, methods, modules) and objects
that show neither a ``__dict__`` nor slots are compared by identity: equal
only to themselves.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Hashable
from typing import Any

import numpy as np

from ..nn.param import Param
from ..ops.arrays import ShapeArray


class _Other(Exception):
    """Inputs hold something other than arrays, lists, tuples and plain values."""


#: what :func:`block_key` compares by identity: code, and what holds code
_OPAQUE = (
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.ModuleType,
    functools.partial,
)


def block_key(block: Any) -> Hashable:
    """What makes ``block``'s traces what they are, its name set aside: a nested tuple of
    its classes, settings and parameter shapes, with each object seen before given as
    the position where it was first seen (module docstring). Every object it reads is
    held by ``block``, which keeps them alive while the key is in use."""
    name = getattr(block, "name", "")
    pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])") if name else None
    seen: dict[int, int] = {}

    def describe(obj: Any) -> Hashable:
        cls = type(obj)
        if cls in _PLAIN:
            return obj
        if cls is str:
            return pattern.sub("\0", obj) if pattern is not None and name in obj else obj
        first = seen.get(id(obj))
        if first is not None:
            return ("seen", first)
        seen[id(obj)] = len(seen)
        if cls is ShapeArray:
            return (obj.shape, obj.dtype)
        if cls is list or cls is tuple:
            return (cls is list, *map(describe, obj))
        if cls is Param:
            return ("param", describe(obj.name), describe(obj.value))
        if cls is dict:
            return ("dict", *((describe(k), describe(v)) for k, v in obj.items()))
        if isinstance(obj, (bool, int, float, complex, str)):  # numpy's scalars, say
            return (cls.__qualname__, obj)
        if cls is slice:
            return ("slice", obj.start, obj.stop, obj.step)
        if isinstance(obj, type):
            return ("type", obj.__module__, obj.__qualname__)
        if isinstance(obj, np.ndarray):  # index arrays by value, a large table by identity
            if obj.nbytes > _BY_VALUE:
                return ("ndarray", id(obj))
            return ("ndarray", obj.shape, obj.dtype.str, obj.tobytes())
        fields = None if isinstance(obj, _OPAQUE) else getattr(obj, "__dict__", None)
        if fields is None:
            slots = [s for c in cls.__mro__ for s in getattr(c, "__slots__", ())]
            if not slots or isinstance(obj, _OPAQUE):
                return ("object", id(obj))  # equal only to itself
            fields = {s: getattr(obj, s, None) for s in slots if s != "__weakref__"}
        skip = getattr(cls, "value_only", ())
        return (
            cls.__module__,
            cls.__qualname__,
            *((k, describe(v)) for k, v in fields.items() if k not in skip),
        )

    return describe(block)


#: the largest numpy array :func:`block_key` compares by its bytes
_BY_VALUE = 1 << 16
#: what :func:`block_key` compares as values
_PLAIN = frozenset({type(None), bool, int, float, complex})


def input_key(tree: Any) -> Hashable | None:
    """The shapes, dtypes and sharing of the arrays in ``tree``; None if it holds
    anything else than arrays, containers and plain values."""
    seen: dict[int, int] = {}

    def walk(obj: Any) -> Hashable:
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        first = seen.get(id(obj))
        if first is not None:
            return ("seen", first)
        seen[id(obj)] = len(seen)
        if type(obj) is ShapeArray:
            return (obj.shape, obj.dtype)
        if type(obj) is list or type(obj) is tuple:
            return (type(obj) is list, *map(walk, obj))
        raise _Other

    try:
        return walk(tree)
    except _Other:
        return None
