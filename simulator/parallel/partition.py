"""Split a model's blocks into contiguous pipeline stages.

``balanced`` minimises the cost of the most expensive stage (the linear
partition problem; dynamic programming over prefix sums, as in PipeDream's
planner, Narayanan et al. 2019, sec. 3.1), breaking ties towards equal block
counts. ``uniform`` gives every stage the same number of blocks (the first
stages take one more when they do not divide), as Megatron-LM does with
transformer layers.
"""

from __future__ import annotations

from functools import cache

from ..errors import LayoutError

PARTITIONS = ("balanced", "uniform")


def uniform(num_blocks: int, parts: int) -> list[range]:
    _check(num_blocks, parts)
    base, extra = divmod(num_blocks, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        out.append(range(lo, hi))
        lo = hi
    return out


def balanced(costs: list[float], parts: int) -> list[range]:
    """Contiguous ranges of ``costs`` minimising the largest range sum."""
    n = len(costs)
    _check(n, parts)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    ideal = n / parts

    @cache
    def best(start: int, k: int) -> tuple[float, float, tuple[int, ...]]:
        # (max stage cost, spread of block counts, cut points) for blocks[start:] in k stages
        if k == 1:
            return prefix[n] - prefix[start], abs((n - start) - ideal), (n,)
        result = None
        for end in range(start + 1, n - k + 2):
            head = prefix[end] - prefix[start]
            worst, spread, cuts = best(end, k - 1)
            cand = (max(head, worst), max(spread, abs((end - start) - ideal)), (end, *cuts))
            # compare costs with a relative tolerance so rounding never breaks a tie
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


def _check(num_blocks: int, parts: int) -> None:
    if parts > num_blocks:
        raise LayoutError(
            f"cannot split {num_blocks} blocks into {parts} pipeline stages: every stage needs "
            f"at least one block; use pp * chunks <= {num_blocks} or a deeper model"
        )
