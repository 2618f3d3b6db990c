"""The iterative ``balanced`` partition gives the recursive one's answers, at any depth."""

from __future__ import annotations

import random
import sys
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.parallel.partition import balanced


def recursive_balanced(costs: list[float], parts: int) -> list[range]:
    """The previous implementation (memoised recursion), kept as the oracle."""
    n = len(costs)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    ideal = n / parts

    @cache
    def best(start: int, k: int) -> tuple[float, float, tuple[int, ...]]:
        if k == 1:
            return prefix[n] - prefix[start], abs((n - start) - ideal), (n,)
        result = None
        for end in range(start + 1, n - k + 2):
            head = prefix[end] - prefix[start]
            worst, spread, cuts = best(end, k - 1)
            cand = (max(head, worst), max(spread, abs((end - start) - ideal)), (end, *cuts))
            if (
                result is None
                or cand[0] < result[0] * (1 - 1e-12)
                or (
                    abs(cand[0] - result[0]) <= 1e-12 * max(result[0], 1e-300)
                    and cand[1] < result[1]
                )
            ):
                result = cand
        assert result is not None
        return result

    _, _, cuts = best(0, parts)
    out, lo = [], 0
    for hi in cuts:
        out.append(range(lo, hi))
        lo = hi
    return out


# Equal costs and small integers make exact and near ties (the tie-break rule's
# cases), zeros with a few spikes the cases where a search stops early, spread-out
# floats the ordinary ones.
COSTS = st.one_of(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=30),
    st.lists(st.integers(0, 3), min_size=1, max_size=30),
    st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.1, 7.0]), min_size=1, max_size=30),
    st.integers(1, 30).flatmap(lambda n: st.just([0.1] * n)),
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(COSTS, st.integers(1, 30))
def test_iterative_equals_recursive(costs: list[float], parts: int) -> None:
    parts = min(parts, len(costs))
    assert balanced(costs, parts) == recursive_balanced(costs, parts)


def test_negative_costs_take_the_full_search() -> None:
    rng = random.Random(3)
    for _ in range(50):
        costs = [rng.uniform(-1, 1) for _ in range(rng.randint(1, 15))]
        parts = rng.randint(1, len(costs))
        assert balanced(costs, parts) == recursive_balanced(costs, parts)


def test_thousands_of_stages_need_no_recursion() -> None:
    # past ~500 stages the recursive version ran out of Python's stack
    n = 3 * sys.getrecursionlimit()
    ranges = balanced([1.0] * n, n)
    assert ranges == [range(i, i + 1) for i in range(n)]
    costs = [1.0 + (i % 7) for i in range(1200)]
    ranges = balanced(costs, 600)
    assert [i for r in ranges for i in r] == list(range(1200))
    assert len(ranges) == 600
