"""Oracles and checks shared by the collective tests."""

from __future__ import annotations

import numpy as np

from simulator.comm import TransferPlan as Plan
from simulator.engine import Engine
from simulator.hardware import ClusterSpec, single_switch
from simulator.ops.arrays import split

ALPHA, BANDWIDTH = 5e-6, 100e9
BETA = 1 / BANDWIDTH


def expected(op: str, xs: list[np.ndarray], root: int = 0) -> list[np.ndarray | None]:
    """What every rank must end with, computed directly with numpy."""
    p = len(xs)
    total = np.sum(xs, axis=0) if xs else None
    if op == "all_reduce":
        return [total] * p
    if op == "reduce":
        return [total if r == root else None for r in range(p)]
    if op == "broadcast":
        return [xs[root]] * p
    if op == "reduce_scatter":
        return split(total.reshape(-1), p)
    if op == "all_gather":
        return [np.concatenate(xs)] * p
    if op == "scatter":
        return split(xs[root], p)
    if op == "gather":
        return [np.concatenate(xs) if r == root else None for r in range(p)]
    if op == "all_to_all":
        blocks = [split(x.reshape(-1), p) for x in xs]
        return [np.concatenate([blocks[s][r] for s in range(p)]) for r in range(p)]
    if op == "send_recv":
        return [xs[(r - 1) % p] for r in range(p)]
    raise AssertionError(op)


def assert_results(op: str, results: list, xs: list[np.ndarray], root: int = 0) -> None:
    for got, want in zip(results, expected(op, xs, root), strict=True):
        if want is None:
            assert got is None
        else:
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def arrays(p: int, n: int, seed: int, shape: tuple[int, ...] | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape or (n,)) for _ in range(p)]


def check_plan(plan: Plan) -> None:
    """Messages go between distinct group ranks and depend only on earlier messages."""
    for i, t in enumerate(plan.transfers):
        assert 0 <= t.src < plan.group_size and 0 <= t.dst < plan.group_size
        assert t.src != t.dst
        assert all(0 <= d < i for d in t.deps)
        # A message can only wait for data that reached its sender.
        assert all(plan.transfers[d].dst == t.src for d in t.deps)


def switch(p: int) -> ClusterSpec:
    """``p`` devices on one ideal switch: every message costs ALPHA + bytes * BETA."""
    return single_switch(p, BANDWIDTH, ALPHA)


def simulate(plan: Plan, cluster: ClusterSpec) -> tuple[float, Engine]:
    engine = Engine(cluster, "steps")
    end = engine.collective(plan, tuple(range(plan.group_size)), plan.op, plan.op)
    return end, engine
