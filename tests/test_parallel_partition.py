import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import LayoutError
from simulator.parallel.partition import balanced, uniform


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
