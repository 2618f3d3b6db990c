"""Tensor parallelism: f and g, column- and row-parallel layers, the MLP.

The oracle is single-device training (docs/design.md): Megatron-LM's split of the
GEMMs (Shoeybi et al. 2019, sec. 3, fig. 3) computes the same sums in
another order, so losses and weights agree to rounding.
"""

import numpy as np
import pytest

from simulator.nn.layers import Linear
from simulator.nn.models import MLPConfig
from simulator.ops.tape import CollectiveCall, recording
from simulator.parallel import Strategy
from simulator.parallel.tensor import (
    ColumnParallel,
    Region,
    RowParallel,
    all_gather_sequence,
    column_shards,
    reduce_scatter_sequence,
    shard_block,
)
from tests.conftest import assert_matches_single, run


def test_sequence_collectives_cut_and_join_along_the_sequence():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(2, 8, 3)) for _ in range(4)]
    parts = reduce_scatter_sequence(xs, "rs")
    total = sum(xs)
    for r, part in enumerate(parts):
        np.testing.assert_allclose(part, total[:, 2 * r : 2 * r + 2], rtol=1e-12)
    for whole in all_gather_sequence(parts, "ag"):
        np.testing.assert_allclose(whole, total, rtol=1e-12)


@pytest.mark.parametrize("sequence_parallel", [False, True])
def test_a_column_then_row_parallel_pair_is_the_single_device_pair(sequence_parallel):
    t = 4
    rng = np.random.default_rng(1)
    first = Linear.create("a", 6, 8, rng, "float64")
    second = Linear.create("b", 8, 6, rng, "float64")
    first.bias.value[...] = rng.normal(size=8)
    second.bias.value[...] = rng.normal(size=6)
    x = rng.normal(size=(3, 8, 6))
    dz = rng.normal(size=(3, 8, 6))
    y, c1 = first.forward(x)
    z, c2 = second.forward(y)
    dx = first.backward(second.backward(dz, c2), c1)

    region = Region(t, sequence_parallel)
    column = ColumnParallel("a", column_shards(first, t), region, "pair")
    row = RowParallel(second, region, "pair")
    split = (lambda a: [a[:, 2 * r : 2 * r + 2] for r in range(t)]) if sequence_parallel else None
    xs = split(x) if split else [x] * t
    with recording() as tape:
        ys, k1 = column.forward(xs)
        zs, k2 = row.forward(ys)
        dys, w2 = row.backward_input(split(dz) if split else [dz] * t, k2)
        dxs, w1 = column.backward_input(dys, k1)
        row.backward_weight(w2)
        column.backward_weight(w1)
    joined = (lambda parts: np.concatenate(parts, axis=1)) if split else (lambda parts: parts[0])
    np.testing.assert_allclose(joined(zs), z, rtol=1e-12)
    np.testing.assert_allclose(joined(dxs), dx, rtol=1e-12)
    # rank r's weight gradients are its columns (rows) of the single-device ones
    np.testing.assert_allclose(
        np.concatenate([s.weight.grad for s in column.shards], 1), first.weight.grad, rtol=1e-12
    )
    np.testing.assert_allclose(
        np.concatenate([s.weight.grad for s in row.shards], 0), second.weight.grad, rtol=1e-12
    )
    calls = [c for c in tape.items if isinstance(c, CollectiveCall)]
    # the tuner picks per size: trees for these tiny messages, rings for large ones
    assert {c.kind for c in calls} == {"tp"}
    assert {c.algorithm for c in calls} <= {"ring", "tree"}
    labels = [c.label for c in calls]
    if sequence_parallel:
        assert labels == [
            "f: all-gather x (pair)",
            "g: reduce-scatter y (pair)",
            "g: all-gather dy (pair)",
            "f: reduce-scatter dx (pair)",
            "all-gather x again for dW (pair)",
        ]
    else:  # f's forward and g's backward are the identity
        assert labels == ["g: all-reduce y (pair)", "f: all-reduce dx (pair)"]


MLP = MLPConfig(layers=5, width=16)


@pytest.fixture(scope="module")
def single():
    return run(MLP, Strategy("single"), steps=3)


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("tp2", tp=2),
        Strategy("tp4", tp=4),
        Strategy("tp2-pp2", tp=2, pp=2, microbatches=4),
        Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2),
        Strategy("tp4-recompute", tp=4, recompute="full"),
    ],
    ids=lambda s: s.name,
)
def test_the_mlp_reproduces_single_device_training(single, strategy):
    assert_matches_single(run(MLP, strategy, steps=3), single)


def test_mlp_blocks_alternate_column_and_row_and_an_odd_last_block_is_replicated():
    model = MLP.build(seed=0, numerics=False)
    blocks = [shard_block(b, 2, False) for b in model.blocks]
    kinds = [type(b.blocks[0]).__name__ if hasattr(b, "blocks") else "replicated" for b in blocks]
    assert kinds == ["ColumnParallel", "RowParallel", "ColumnParallel", "RowParallel", "replicated"]
    assert blocks[0].params(1)[0].shape == (16, 8)  # half of the output columns
    assert blocks[1].params(1)[0].shape == (8, 16)  # half of the input rows
    assert blocks[4].params(1)[0].shape == (16, 16)
    assert blocks[4].params(0)[0] is not blocks[4].params(1)[0]  # each rank its own copy
