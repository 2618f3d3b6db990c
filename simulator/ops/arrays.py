"""Arrays with data (numpy) and arrays without (:class:`ShapeArray`).

Numerics mode runs the layers on numpy arrays. Shape-only mode runs the very
same layer code on :class:`ShapeArray` objects, which carry a shape and a dtype
and nothing else, so a GPT-3-sized step costs microseconds per op instead of
hours. The op module (:mod:`simulator.ops`) dispatches on the array kind; the
helpers here (``nbytes``, ``split``, ``concat`` ...) work on both kinds so that
layers, collectives and the runtime never need to ask which one they hold.

Dtype names are canonical strings: ``float64``, ``float32``, ``bf16``, ``fp16``
for floating point data (``fp8`` for the FP8 copies of GEMM inputs that
:func:`simulator.ops.basic.cast` makes, shape-only), ``int64`` for token ids
and ``uint8`` for dropout masks (one byte per element, as Korthikanti et al.
2022 count them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

ITEMSIZE: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int64": 8,
    "uint8": 1,
}

#: dtypes numpy can compute in (16-bit floats are shape-only).
NUMPY_DTYPES = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "uint8": np.uint8}


class ShapeArray:
    """An array that has a shape and a dtype but no values.

    Supports the structural operations layers and collectives need: indexing
    with slices, reshape, transpose, and broadcasting arithmetic (whose result
    is again a ShapeArray).
    """

    # a shape-only step makes and measures millions of these: the sizes are counted
    # once, when the array is made (it never changes shape)
    __slots__ = ("dtype", "nbytes", "shape", "size")
    __array_priority__ = 1000  # so that ndarray + ShapeArray defers to us

    def __init__(self, shape: Sequence[int], dtype: str) -> None:
        itemsize = ITEMSIZE.get(dtype)
        if itemsize is None:
            raise ValueError(f"unknown dtype {dtype!r}")
        self.shape = tuple(map(int, shape))
        self.dtype = dtype
        self.size = math.prod(self.shape)
        self.nbytes = self.size * itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def T(self) -> ShapeArray:
        return ShapeArray(self.shape[::-1], self.dtype)

    def reshape(self, *shape: int | Sequence[int]) -> ShapeArray:
        dims = list(shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            dims[dims.index(-1)] = self.size // known
        if math.prod(dims) != self.size:
            raise ValueError(f"cannot reshape {self.shape} into {tuple(dims)}")
        return ShapeArray(dims, self.dtype)

    def transpose(self, *axes: int) -> ShapeArray:
        order = axes or tuple(reversed(range(self.ndim)))
        return ShapeArray([self.shape[a] for a in order], self.dtype)

    def swapaxes(self, a: int, b: int) -> ShapeArray:
        dims = list(self.shape)
        dims[a], dims[b] = dims[b], dims[a]
        return ShapeArray(dims, self.dtype)

    def astype(self, dtype: str) -> ShapeArray:
        return ShapeArray(self.shape, dtype)

    def copy(self) -> ShapeArray:
        return self

    def fresh(self) -> ShapeArray:
        """Another array of this shape and dtype: memory that counts arrays by identity
        (:func:`tree_bytes`) counts it apart from this one, as it would a copy with
        values. (:meth:`copy` may return the array itself.)"""
        new = ShapeArray.__new__(ShapeArray)
        new.shape, new.dtype, new.size, new.nbytes = self.shape, self.dtype, self.size, self.nbytes
        return new

    def __getitem__(self, key: Any) -> ShapeArray:
        keys = key if isinstance(key, tuple) else (key,)
        dims: list[int] = []
        axis = 0
        for k in keys:
            if k is Ellipsis:
                rest = self.ndim - axis - (len(keys) - keys.index(Ellipsis) - 1)
                dims.extend(self.shape[axis : axis + rest])
                axis += rest
            elif isinstance(k, slice):
                dims.append(len(range(*k.indices(self.shape[axis]))))
                axis += 1
            elif isinstance(k, np.ndarray):  # positions listed one by one
                dims.append(len(k))
                axis += 1
            else:  # an integer drops the axis
                axis += 1
        dims.extend(self.shape[axis:])
        return ShapeArray(dims, self.dtype)

    def _binary(self, other: Any) -> ShapeArray:
        other_shape = getattr(other, "shape", ())
        return ShapeArray(broadcast_shapes(self.shape, other_shape), self.dtype)

    __add__ = __radd__ = __sub__ = __rsub__ = _binary
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _binary

    def __neg__(self) -> ShapeArray:
        return self

    def __iadd__(self, other: Any) -> ShapeArray:
        return self

    # it holds no values and never changes, so a copy may be the array itself (copying
    # a shape-only model, once per replica or rank, then costs nothing per parameter)
    def __copy__(self) -> ShapeArray:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ShapeArray:
        return self

    def __isub__(self, other: Any) -> ShapeArray:
        return self

    def __repr__(self) -> str:
        return f"ShapeArray({self.shape}, {self.dtype})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ShapeArray)
            and self.shape == other.shape
            and self.dtype == other.dtype
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))


Array: TypeAlias = "np.ndarray | ShapeArray"


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape numpy's broadcasting gives arrays of ``shapes`` (``numpy.broadcast_shapes``,
    without building arrays to find it: shape-only ops ask for it millions of times).
    Shapes align on their last axis; an axis of size 1 stretches to the other's size;
    other sizes must agree (``ValueError``)."""
    first = shapes[0]
    if all(s == first for s in shapes):
        return first
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for s in shapes:
        offset = ndim - len(s)
        for i, d in enumerate(s):
            if d != 1 and d != out[offset + i]:
                if out[offset + i] != 1:
                    raise ValueError(f"shapes {shapes} do not broadcast together")
                out[offset + i] = d
    return tuple(out)


#: numpy dtype -> its name (numpy builds the name anew each time it is asked)
_NAMES: dict[np.dtype, str] = {}


def dtype_of(x: Array) -> str:
    """Canonical dtype name of an array of either kind."""
    if isinstance(x, ShapeArray):
        return x.dtype
    name = _NAMES.get(x.dtype)
    if name is None:
        name = _NAMES[x.dtype] = np.dtype(x.dtype).name
    return name


def nbytes(x: Array) -> int:
    return int(x.nbytes)


def is_shape_only(x: Array) -> bool:
    return isinstance(x, ShapeArray)


def empty(shape: Sequence[int], dtype: str, numerics: bool) -> Array:
    """Zeros of ``shape`` (numerics) or a ShapeArray (shape-only)."""
    if not numerics:
        return ShapeArray(shape, dtype)
    if dtype not in NUMPY_DTYPES:
        raise ValueError(f"dtype {dtype!r} is shape-only; numerics need float64 or float32")
    return np.zeros(shape, dtype=NUMPY_DTYPES[dtype])


def like(x: Array, shape: Sequence[int] | None = None, dtype: str | None = None) -> Array:
    """Zeros of the same kind as ``x``."""
    return empty(x.shape if shape is None else shape, dtype or dtype_of(x), not is_shape_only(x))


def split(x: Array, parts: int, axis: int = 0) -> list[Array]:
    """Split along ``axis`` into ``parts`` nearly equal pieces (sizes differ by at most 1).

    The first ``size % parts`` pieces get one extra element, as
    ``numpy.array_split`` does; collectives rely on this for sizes that do not
    divide by the group size.
    """
    n = x.shape[axis]
    bounds = split_bounds(n, parts)
    index = [slice(None)] * x.ndim
    pieces = []
    for lo, hi in bounds:
        index[axis] = slice(lo, hi)
        pieces.append(x[tuple(index)])
    return pieces


def split_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Half-open ranges of ``parts`` nearly equal pieces of ``range(n)``."""
    base, extra = divmod(n, parts)
    bounds, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def concat(xs: Sequence[Array], axis: int = 0) -> Array:
    """Concatenate arrays of one kind along ``axis``."""
    if isinstance(xs[0], ShapeArray):
        dims = list(xs[0].shape)
        dims[axis] = sum(x.shape[axis] for x in xs)
        return ShapeArray(dims, xs[0].dtype)
    return np.concatenate(xs, axis=axis)


def tree_bytes(tree: Any, seen: set[int] | None = None) -> int:
    """Bytes of the distinct arrays in nested lists, tuples and dicts.

    An array saved twice (say, a layer's output that the next layer also saves
    as its input) is counted once: this is how much memory a saved context
    really holds. Pass one ``seen`` set to count several trees together.
    """
    seen = set() if seen is None else seen
    if isinstance(tree, (list, tuple)):
        return sum(tree_bytes(t, seen) for t in tree)
    if isinstance(tree, dict):
        return sum(tree_bytes(t, seen) for t in tree.values())
    if isinstance(tree, (np.ndarray, ShapeArray)):
        base = tree
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base  # a view holds its base alive, count the base once
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return int(base.nbytes)
    return 0
