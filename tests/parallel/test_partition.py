import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import LayoutError
from simulator.parallel.partition import balanced, balanced_stages, uniform


def test_balanced_minimises_the_largest_stage():
    assert [list(r) for r in balanced([1, 1, 1, 1, 1, 1, 1, 1], 4)] == [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
    ]
    assert [list(r) for r in balanced([5, 1, 1, 1, 1, 1], 2)] == [[0], [1, 2, 3, 4, 5]]


@given(st.lists(st.floats(0.1, 10), min_size=1, max_size=12), st.integers(1, 12))
def test_balanced_is_contiguous_and_no_worse_than_uniform(costs, parts):
    if parts > len(costs):
        with pytest.raises(LayoutError):
            balanced(costs, parts)
        return
    ranges = balanced(costs, parts)
    assert [i for r in ranges for i in r] == list(range(len(costs)))
    assert all(len(r) > 0 for r in ranges)
    worst = max(sum(costs[i] for i in r) for r in ranges)
    assert worst <= max(sum(costs[i] for i in r) for r in uniform(len(costs), parts)) + 1e-9


def test_uniform_gives_the_first_stages_the_remainder():
    assert [len(r) for r in uniform(10, 4)] == [3, 3, 2, 2]
    with pytest.raises(LayoutError, match="every stage needs at least one block"):
        uniform(2, 3)


def _best_largest(stage_costs: list[list[float]]) -> float:
    """The least possible largest stage cost, by trying every split."""
    from itertools import combinations

    parts, n = len(stage_costs), len(stage_costs[0])
    best = float("inf")
    for cuts in combinations(range(1, n), parts - 1):
        bounds = (0, *cuts, n)
        worst = max(sum(stage_costs[i][bounds[i] : bounds[i + 1]]) for i in range(parts))
        best = min(best, worst)
    return best


def test_balanced_stages_gives_faster_stages_more_blocks():
    # stage 1 runs every block twice as fast: two blocks here, four there
    assert [list(r) for r in balanced_stages([[2.0] * 6, [1.0] * 6])] == [[0, 1], [2, 3, 4, 5]]
    # alike stages: the same split as balanced
    costs = [5.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert balanced_stages([costs, costs]) == balanced(costs, 2)


@given(
    st.integers(1, 4).flatmap(
        lambda parts: st.lists(
            st.lists(st.floats(0.1, 10), min_size=7, max_size=7), min_size=parts, max_size=parts
        )
    )
)
def test_balanced_stages_minimises_the_largest_stage(stage_costs):
    ranges = balanced_stages(stage_costs)
    assert [i for r in ranges for i in r] == list(range(7))
    worst = max(sum(stage_costs[s][i] for i in r) for s, r in enumerate(ranges))
    assert worst == pytest.approx(_best_largest(stage_costs), rel=1e-9)
