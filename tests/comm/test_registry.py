"""The dispatch in simulator.comm: every pair runs, bad requests say what to do instead."""

from __future__ import annotations

import pytest

from simulator import LayoutError, comm
from simulator.ops.arrays import ShapeArray
from tests.comm_helpers import arrays, assert_results, check_plan

PAIRS = [(op, a) for op, algs in comm.ALGORITHMS.items() for a in [comm.AUTO, *algs]]


def test_the_required_pairs_exist() -> None:
    assert set(comm.ALGORITHMS["all_reduce"]) >= {
        "ring",
        "tree",
        "naive",
        "recursive",
        "hierarchical",
    }
    for op in ("reduce_scatter", "all_gather"):
        assert set(comm.ALGORITHMS[op]) >= {"ring", "recursive", "naive"}
    for op in ("broadcast", "reduce"):
        assert set(comm.ALGORITHMS[op]) >= {"tree", "naive"}


@pytest.mark.parametrize(("op", "algorithm"), PAIRS)
def test_every_pair_runs_shape_only(op: str, algorithm: str) -> None:
    p, n = 8, 21  # 21 elements: chunks of 3 and 2
    xs = [ShapeArray((n,), "float32") for _ in range(p)]
    results, plan = comm.collective(op, xs, algorithm, root=5, nodes=[r // 4 for r in range(p)])
    check_plan(plan)
    assert (plan.op, plan.group_size) == (op, p)
    # auto resolves to one of the operation's algorithms, and the plan says which
    assert plan.algorithm == algorithm or algorithm == comm.AUTO
    assert plan.algorithm in comm.ALGORITHMS[op]
    size = {
        "reduce_scatter": [3] * 5 + [2] * 3,
        "scatter": [3] * 5 + [2] * 3,
        "all_gather": [n * p] * p,
        "gather": [n * p] * p,
        "all_to_all": [3 * p] * 5 + [2 * p] * 3,
    }.get(op, [n] * p)
    for r, (got, want) in enumerate(zip(results, size, strict=True)):
        if op in ("reduce", "gather") and r != 5:
            assert got is None
        else:
            assert got == ShapeArray((want,), "float32")


def test_named_wrappers_default_to_auto() -> None:
    small, large = [ShapeArray((4,), "float32")] * 4, [ShapeArray((10**8,), "float32")] * 4
    # across nodes, latency-bound: a tree's few hops; bandwidth-bound: the ring (NCCL's
    # choices); inside one node always the ring
    assert comm.all_reduce(small * 8)[1].algorithm == "tree"
    assert comm.all_reduce(small)[1].algorithm == "ring"
    assert comm.all_reduce(large)[1].algorithm == "ring"
    assert comm.broadcast(small, root=2)[1].algorithm == "tree"
    assert comm.reduce(small)[1].algorithm == "tree"
    assert comm.collective("scatter", small)[1].algorithm == "naive"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda xs: comm.collective("allreduce", xs), r"unknown collective 'allreduce'; choose"),
        (
            lambda xs: comm.all_reduce(xs, "butterfly"),
            r"all_reduce has no algorithm 'butterfly'; choose one of: auto, ring, tree",
        ),
        (
            lambda xs: comm.broadcast(xs, algorithm="ring"),
            r"broadcast has no algorithm 'ring'; choose one of: auto, tree, naive",
        ),
        (lambda xs: comm.broadcast(xs, root=4), r"root must be a rank of the group, 0 to 3; got 4"),
        (lambda xs: comm.all_reduce(xs, nodes=[0, 1]), r"nodes names 2 ranks but the group has 4"),
        (lambda xs: comm.all_reduce(xs[:0]), r"needs at least one rank"),
        (
            lambda xs: comm.collective("broadcast", xs, "tree", channels=2),
            r"tree broadcast runs one channel, got channels = 2",
        ),
        (lambda xs: comm.collective("all_reduce", xs, channels=0), r"channels must be a whole"),
        (
            lambda xs: comm.all_reduce([*xs[:3], ShapeArray((5,), "float32")]),
            r"one shape on every rank",
        ),
    ],
)
def test_bad_requests_raise_one_line_layout_errors(call, message: str) -> None:
    with pytest.raises(LayoutError, match=message) as err:
        call([ShapeArray((4,), "float32")] * 4)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("algorithm", list(comm.ALGORITHMS["all_reduce"]))
def test_all_reduce_keeps_multidimensional_shapes(algorithm: str) -> None:
    xs = arrays(4, 0, seed=3, shape=(3, 5))
    results, _ = comm.all_reduce(xs, algorithm, nodes=[0, 0, 1, 1])
    assert_results("all_reduce", results, xs)


@pytest.mark.parametrize("algorithm", list(comm.ALGORITHMS["all_gather"]))
def test_all_gather_concatenates_along_the_first_axis(algorithm: str) -> None:
    xs = arrays(4, 0, seed=4, shape=(2, 3))
    results, _ = comm.all_gather(xs, algorithm)
    assert all(r.shape == (8, 3) for r in results)
    assert_results("all_gather", results, xs)
