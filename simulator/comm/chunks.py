"""Chunks of flat buffers: the bookkeeping every algorithm shares.

An algorithm works on each rank's array flattened into one buffer and moves
*chunks*, half-open element ranges of it; with channels, every chunk is cut
once more into one piece per channel. In numerics mode the buffers are real
numpy arrays and every message copies or adds a range; in shape-only mode
there are no buffers, only the sizes the plan records, so an algorithm over a
thousand ranks costs what its plan costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from ..ops.arrays import ITEMSIZE, Array, ShapeArray, concat, dtype_of, is_shape_only, split_bounds

Bounds = list[tuple[int, int]]


def itemsize(x: Array) -> int:
    return ITEMSIZE[dtype_of(x)]


def buffers(xs: Sequence[Array]) -> list[np.ndarray] | None:
    """Flat copies of the ranks' arrays, or ``None`` for shape-only arrays."""
    if not xs or is_shape_only(xs[0]):
        return None
    return [np.array(x, copy=True, order="C").reshape(-1) for x in xs]


def channel_pieces(bounds: Bounds, channels: int) -> list[Bounds]:
    """``pieces[j][c]``: chunk ``j`` of ``bounds`` cut into ``channels`` nearly equal ranges."""
    return [[(lo + a, lo + b) for a, b in split_bounds(hi - lo, channels)] for lo, hi in bounds]


def ring_sizes(pieces: list[Bounds], ring: Sequence[int], channel: int, item: int) -> tuple:
    """Bytes of the piece ``channel`` of chunk ``ring[i]``, for every ring position ``i``."""
    sizes = tuple(item * (pieces[j][channel][1] - pieces[j][channel][0]) for j in ring)
    return sizes[:1] if len(set(sizes)) == 1 else sizes


def concat_bounds(counts: Sequence[int]) -> Bounds:
    """Where arrays of ``counts`` elements sit in their concatenation."""
    ends = list(accumulate(counts))
    return [(end - n, end) for n, end in zip(counts, ends, strict=True)]


def window_bytes(bounds: Bounds, item: int) -> list[int]:
    """Prefix sums of chunk bytes: chunks ``lo .. hi-1`` hold ``out[hi] - out[lo]`` bytes."""
    return [0, *accumulate(item * (hi - lo) for lo, hi in bounds)]


def shape_key(xs: Sequence[Array | None]) -> tuple:
    """What a plan depends on about its inputs: their shapes and dtype (a rooted
    operation may leave the entries it does not read ``None``)."""
    shapes = tuple(None if x is None else tuple(x.shape) for x in xs)
    if len(set(shapes)) == 1:
        shapes = (shapes[0], len(xs))
    dtypes = tuple(sorted({dtype_of(x) for x in xs if x is not None}))
    return (dtypes, shapes)


def flat_like(x: Array, count: int) -> Array:
    """A flat array of ``count`` elements of ``x``'s kind and dtype (shape-only results)."""
    return ShapeArray((count,), dtype_of(x))


#: Rows rank ``s`` sends rank ``d``: ``splits[s][d]`` (an all-to-all of uneven blocks).
Splits = Sequence[Sequence[int]]


def exchange(xs: Sequence[Array], splits: Splits | None) -> tuple[list[list[int]], list[Array]]:
    """What an all-to-all moves: the bytes rank ``s`` sends rank ``d``, and every rank's
    result.

    Without ``splits`` every rank's flattened array is cut into ``p`` nearly equal
    blocks, block ``d`` for rank ``d``, and rank ``d`` ends with the blocks meant for
    it in rank order. With ``splits`` (MPI's ``Alltoallv``, NCCL's grouped sends;
    PyTorch's ``all_to_all_single`` with split sizes) rank ``s``'s array is cut along
    its first axis into blocks of ``splits[s][0], splits[s][1], ...`` rows, and rank
    ``d`` ends with the blocks meant for it, stacked in rank order along that axis.
    """
    p = len(xs)
    if splits is None:
        bounds = split_bounds(xs[0].size, p)
        item = itemsize(xs[0])
        sizes = [[item * (hi - lo) for lo, hi in bounds] for _ in range(p)]
        if is_shape_only(xs[0]):
            return sizes, [flat_like(xs[0], p * (hi - lo)) for lo, hi in bounds]
        blocks = [[x.reshape(-1)[lo:hi] for lo, hi in bounds] for x in xs]
    else:
        row = [_row_bytes(x) for x in xs]
        sizes = [[row[s] * n for n in splits[s]] for s in range(p)]
        if is_shape_only(xs[0]):
            rest = tuple(xs[0].shape[1:])
            dtype = dtype_of(xs[0])
            return sizes, [
                ShapeArray((sum(splits[s][d] for s in range(p)), *rest), dtype) for d in range(p)
            ]
        blocks = [[x[lo:hi] for lo, hi in concat_bounds(list(splits[s]))] for s, x in enumerate(xs)]
    return sizes, [concat([blocks[s][d] for s in range(p)]) for d in range(p)]


def _row_bytes(x: Array) -> int:
    """Bytes of one row along the first axis (of an array that has none)."""
    count = 1
    for n in x.shape[1:]:
        count *= n
    return count * itemsize(x)
