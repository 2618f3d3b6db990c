"""Time intervals: how much of a time line a set of ``(start, end)`` pairs covers."""

from __future__ import annotations

import numpy as np


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The sorted, disjoint intervals covering exactly the given ones."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by the intervals ``[starts[i], ends[i]]``, overlaps once.

    Sorted by start, an interval opens a new stretch when it starts after every
    earlier interval has ended; each stretch runs to the largest end seen in it.
    """
    if starts.size == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    opens = np.empty(s.size, dtype=bool)
    opens[0] = True
    opens[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(opens)
    last = np.append(first[1:], s.size) - 1
    return float(np.sum(reach[last] - s[first]))
