"""Split a model's blocks into contiguous pipeline stages.

``balanced`` minimises the cost of the most expensive stage (the linear
partition problem; dynamic programming over prefix sums, as in PipeDream's
planner, Narayanan et al. 2019, sec. 3.1), breaking ties towards equal block
counts. ``uniform`` gives every stage the same number of blocks (the first
stages take one more when they do not divide), as Megatron-LM does with
transformer layers. ``balanced_stages`` is ``balanced`` when a block costs
each stage its own time: stages on devices of different speeds (a pipeline
over A100 and H100 nodes gives the faster stages more blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from ..errors import LayoutError

PARTITIONS = ("balanced", "uniform")


def uniform(num_blocks: int, parts: int) -> list[range]:
    check_parts(num_blocks, parts)
    base, extra = divmod(num_blocks, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        out.append(range(lo, hi))
        lo = hi
    return out


def balanced(costs: list[float], parts: int) -> list[range]:
    """Contiguous ranges of ``costs`` minimising the largest range sum.

    The dynamic programme over suffixes (PipeDream's planner, Narayanan et al.
    2019, sec. 3.1): ``best[k][s]`` is the best split of ``blocks[s:]`` into
    ``k`` stages, as ``(largest stage cost, spread, first cut)``, where the
    spread is the largest distance of a stage's block count from the ideal
    ``n / parts``. A split is better when its cost is lower, or when the
    costs agree to a relative 1e-12 (rounding must not break a tie) and its
    spread is smaller; among equals the first cut found, the shortest first
    stage, wins.

    The table is filled bottom-up, ``k = 1, 2, ..., parts``, one numpy
    vector over all start blocks ``s`` at a time, so no depth of recursion
    is needed for any number of stages. For each ``k`` the candidate first
    stages are tried from short to long; with non-negative costs a start
    stops trying once no longer first stage can win: its cost can only grow,
    and past the ideal length so can its spread.
    """
    check_parts(len(costs), parts)
    return _split([_prefix(costs)] * parts)


def balanced_stages(stage_costs: Sequence[Sequence[float]]) -> list[range]:
    """Contiguous ranges, one per stage, minimising the largest stage cost when block
    ``j`` costs stage ``i`` ``stage_costs[i][j]`` (ties as in :func:`balanced`, whose
    dynamic programme this is with one prefix sum per stage)."""
    parts = len(stage_costs)
    n = len(stage_costs[0]) if parts else 0
    check_parts(n, parts)
    if any(len(c) != n for c in stage_costs):
        raise ValueError("every stage needs the cost of every block")
    return _split([_prefix(c) for c in stage_costs])


def _prefix(costs: Sequence[float]) -> np.ndarray:
    return np.array(list(accumulate(costs, initial=0.0)), dtype=np.float64)


def _split(prefixes: list[np.ndarray]) -> list[range]:
    """The dynamic programme of :func:`balanced`; stage ``i``'s costs are the prefix
    sums ``prefixes[i]`` (the same array for every stage when blocks cost all alike)."""
    parts = len(prefixes)
    n = len(prefixes[0]) - 1
    blocks = [np.diff(p) for p in {id(p): p for p in prefixes}.values()]
    nonneg = all(bool(np.all(b >= 0)) for b in blocks)
    ideal = n / parts
    if nonneg:
        # every split of blocks[s:] has a stage holding block j >= s, and a computed
        # stage cost is never below the computed cost of one of its blocks (float
        # subtraction is monotone), nor that below the block's cheapest cost on any
        # stage; so the largest such cheapest block bounds the split's cost
        block = blocks[0] if len(blocks) == 1 else np.minimum.reduce(blocks)
        largest = np.append(np.maximum.accumulate(block[::-1])[::-1], -np.inf)
    # k = 1: the one stage blocks[s:], the last
    prefix = prefixes[parts - 1]
    starts = np.arange(n + 1)
    worst = prefix[n] - prefix[starts]
    spread = np.abs((n - starts) - ideal)
    cuts: list[np.ndarray] = [np.full(n + 1, n)]
    for k in range(2, parts + 1):
        # the first of the last k stages, on blocks[s:]
        prefix = prefixes[parts - k]
        # starts that leave room for k stages and that the final answer can reach
        s = np.arange(parts - k, n - k + 1)
        best0 = np.maximum(prefix[s + 1] - prefix[s], worst[s + 1])
        best1 = np.maximum(spread[s + 1], np.abs(1 - ideal))
        cut = s + 1
        active = np.ones(len(s), dtype=bool)
        for length in range(2, n - k - s[0] + 2):
            end = s + length
            active &= end <= n - k + 1
            if nonneg:
                # a start is done when no longer first stage can replace its best split:
                # not by a cost lower by the tolerance (every split costs at least the
                # first stage and at least the start's largest block), and not by a
                # tie with a smaller spread (the first stage's length is past ideal + spread)
                head_now = prefix[np.minimum(end, n)] - prefix[s]
                floor = best0 * (1 - 1e-12)
                no_lower = (head_now >= floor) | (largest[s] >= floor)
                no_tie = (head_now - best0 > 1e-12 * np.maximum(best0, 1e-300)) | (
                    (length >= ideal) & (np.abs(length - ideal) >= best1)
                )
                active &= ~(no_lower & no_tie)
            if not active.any():
                break
            e = np.where(active, end, s + 1)
            head = prefix[e] - prefix[s]
            c0 = np.maximum(head, worst[e])
            c1 = np.maximum(spread[e], np.abs(length - ideal))
            better = active & (
                (c0 < best0 * (1 - 1e-12))
                | ((np.abs(c0 - best0) <= 1e-12 * np.maximum(best0, 1e-300)) & (c1 < best1))
            )
            best0 = np.where(better, c0, best0)
            best1 = np.where(better, c1, best1)
            cut = np.where(better, end, cut)
        worst = np.full(n + 1, np.inf)
        spread = np.full(n + 1, np.inf)
        worst[s], spread[s] = best0, best1
        full_cut = np.full(n + 1, n)
        full_cut[s] = cut
        cuts.append(full_cut)
    out, lo = [], 0
    for k in range(parts, 0, -1):
        hi = int(cuts[k - 1][lo])
        out.append(range(lo, hi))
        lo = hi
    return out


def check_parts(num_blocks: int, parts: int) -> None:
    """Raise :class:`LayoutError` unless every one of ``parts`` stages can get a block."""
    if parts < 1:
        raise LayoutError(f"a pipeline needs at least one stage, got {parts}")
    if parts > num_blocks:
        raise LayoutError(
            f"cannot split {num_blocks} blocks into {parts} pipeline stages: every stage needs "
            f"at least one block; use pp * chunks <= {num_blocks} or a deeper model"
        )
