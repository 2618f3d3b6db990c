"""How the ranks of a context-parallel group meet: collectives inside every group at once.

Each tensor-parallel rank ``r`` of a ``cp x tp`` worker has its own
context-parallel group, the ranks ``r, t + r, 2t + r, ...``: they hold the
same heads of different tokens. :func:`exchange` runs a collective inside
every such group at once, recorded as one collective of kind ``"cp"`` (the
Gantt chart's context-parallel colour, whose waits are exposed
communication); point-to-point steps and all-to-alls go directly from rank
to rank, as NCCL's send and receive do, all-gathers and reduce-scatters as
NCCL's tuner picks (:mod:`simulator.comm.tuner`). Keys and values travel
packed in one buffer (:func:`pack_kv`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.arrays import Array, ShapeArray, dtype_of, is_shape_only
from ...ops.basic import bytes_moved, emit
from ..tensor.collectives import ALGORITHM, in_groups

#: Collectives that go rank to rank (NCCL's grouped send and receive).
_POINT_TO_POINT = ("send_recv", "all_to_all")


def exchange(op: str, xs: list[Array], t: int, label: str, handle: int = -1) -> list[Array]:
    """``op`` inside every context-parallel group of a worker whose tensor-parallel
    groups have ``t`` ranks (the module docstring), as one collective of kind ``"cp"``;
    asynchronous with a ``handle`` (:func:`~simulator.parallel.tensor.wait` for it)."""
    cp = len(xs) // t
    groups = [[c * t + r for c in range(cp)] for r in range(t)]
    algorithm = "ring" if op in _POINT_TO_POINT else ALGORITHM
    return in_groups(op, xs, groups, label, handle, kind="cp", algorithm=algorithm)


def copy_kernel(name: str, out: Any, *inputs: Array) -> Array:
    """Record a copy that lays ``inputs`` out as ``out`` (numbers or shape), one
    memory-bound kernel: packing keys and values into one buffer to send, putting
    gathered chunks back in sequence order."""
    first = inputs[0]
    dtype = dtype_of(first)
    result = out
    if is_shape_only(first):
        result = ShapeArray(getattr(out, "shape", out), dtype)
    emit(name, "elementwise", dtype, 0, bytes_moved(*inputs, result))
    return result


def pack_kv(k: Array, v: Array, name: str) -> Array:
    """Keys and values ``(b, kv, 1, n, d)`` in one buffer ``(b, kv, 2, n, d)``, as
    TransformerEngine concatenates them before sending (one copy kernel)."""
    shape = (*k.shape[:2], 2, *k.shape[3:])
    out = shape if is_shape_only(k) else np.concatenate([k, v], axis=2)
    return copy_kernel(name, out, k, v)


def unpack_kv(kv: Array) -> tuple[Array, Array]:
    """Views of the keys and values of a :func:`pack_kv` buffer (no kernel)."""
    return kv[:, :, 0:1], kv[:, :, 1:2]


def collect_kv(
    carried: Array | None, share: tuple[slice, Array, Array] | None, like: Array, name: str
) -> Array:
    """A dK, dV buffer (shaped ``like``: keys and values packed, :func:`pack_kv`) with
    ``share = (rows, dk, dv)`` added at ``rows`` of the sequence: the buffer
    ``carried`` (that came around a ring, say), or a new one (zeros where the share
    has no rows). One kernel; without a share, ``carried`` or zeros."""
    if share is None and carried is not None:
        return carried
    dtype = dtype_of(like)
    shape_only = is_shape_only(like)
    if shape_only:
        out: Array = ShapeArray(like.shape, dtype) if carried is None else carried
    else:
        out = np.zeros_like(like) if carried is None else carried
    if share is None:  # nothing of this block seen here: zeros to carry on
        emit(name, "elementwise", dtype, 0, bytes_moved(out))
        return out
    cols, dk, dv = share
    if not shape_only:
        out[:, :, 0:1, cols] += dk
        out[:, :, 1:2, cols] += dv
    # a new buffer is written whole; one that came around is read and written at the rows
    written = bytes_moved(out) if carried is None else 2 * bytes_moved(out[:, :, :, cols])
    emit(name, "elementwise", dtype, 0, bytes_moved(dk, dv) + written)
    return out
