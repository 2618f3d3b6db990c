import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from simulator.ops.arrays import ShapeArray, concat, split, split_bounds, tree_bytes


def test_shape_array_follows_numpy_shapes():
    x = ShapeArray((4, 6, 8), "bf16")
    real = np.zeros((4, 6, 8))
    assert x.nbytes == 4 * 6 * 8 * 2
    assert x[1:3].shape == real[1:3].shape
    assert x[:, 2].shape == real[:, 2].shape
    assert x[..., :3].shape == real[..., :3].shape
    assert x.reshape(-1, 8).shape == (24, 8)
    assert x.T.shape == (8, 6, 4)
    assert (x + ShapeArray((8,), "bf16")).shape == (4, 6, 8)
    assert x.swapaxes(0, 1).shape == (6, 4, 8)


@given(st.integers(0, 200), st.integers(1, 16))
def test_split_bounds_cover_and_differ_by_at_most_one(n, parts):
    bounds = split_bounds(n, parts)
    sizes = [hi - lo for lo, hi in bounds]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_split_and_concat_round_trip_both_kinds():
    x = np.arange(10.0)
    assert np.array_equal(concat(split(x, 3)), x)
    s = ShapeArray((10, 2), "float32")
    assert [p.shape for p in split(s, 3)] == [(4, 2), (3, 2), (3, 2)]
    assert concat(split(s, 3)).shape == (10, 2)


def test_tree_bytes_counts_each_array_once():
    a, b = np.zeros(10), np.zeros(5)
    assert tree_bytes([a, (a, b), {"x": a}]) == 120
    assert tree_bytes([a.reshape(2, 5), a]) == 80  # a view shares its base
    s = ShapeArray((3,), "uint8")
    assert tree_bytes([s, s, None, 3]) == 3
