"""Closed forms and nccl-tests' bandwidths."""

from __future__ import annotations

import pytest

from simulator.comm import closed_forms as cf


def test_busbw_factors_follow_nccl_tests() -> None:
    assert cf.bus_factor("all_reduce", 8) == pytest.approx(2 * 7 / 8)
    for op in ("reduce_scatter", "all_gather", "all_to_all"):
        assert cf.bus_factor(op, 8) == pytest.approx(7 / 8)
    for op in ("broadcast", "reduce", "send_recv"):
        assert cf.bus_factor(op, 8) == 1.0


def test_ring_all_reduce_busbw_approaches_the_link_bandwidth() -> None:
    # Without latency the ring moves 2 (p-1)/p n bytes through every port, so
    # busbw equals the port bandwidth whatever p (nccl-tests' reason for busbw).
    for p in (2, 8, 64):
        t = cf.ring_all_reduce(p, 1e9, 0.0, 1 / 100e9)
        assert cf.busbw("all_reduce", p, 1e9, t) == pytest.approx(100e9)
        assert cf.algbw(1e9, t) == pytest.approx(100e9 / (2 * (p - 1) / p))


def test_algbw_of_an_empty_message_is_zero() -> None:
    assert cf.algbw(0, 1e-5) == 0.0


def test_formulas_agree_where_the_algorithms_do() -> None:
    a, b, n = 3e-6, 1e-11, 1e8
    # Two ranks: every all-reduce is one exchange of halves (ring, Rabenseifner)
    # or of wholes (recursive doubling, which equals the binomial tree then).
    assert cf.ring_all_reduce(2, n, a, b) == pytest.approx(cf.rabenseifner_all_reduce(2, n, a, b))
    assert cf.recursive_doubling_all_reduce(2, n, a, b) == pytest.approx(
        cf.binomial_broadcast(2, n, a, b)
    )
    # One node: the two-level formula is the flat ring.
    assert cf.two_level_all_reduce(8, 1, n, a, b, 1.0, 1.0) == pytest.approx(
        cf.ring_all_reduce(8, n, a, b)
    )
    assert cf.binomial_broadcast(5, n, a, b) == pytest.approx(3 * (a + n * b))
