"""One collective per tensor-parallel rank over a data-parallel group of workers.

The data-parallel group of a tensor-parallel rank is the devices that hold
the same shard in every replica; each runs its own collective, placed where
those devices sit (:meth:`simulator.runtime.core.Runtime.layout_of`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import comm
from ..worker import Worker

if TYPE_CHECKING:
    from ...runtime.core import Runtime


def group_collective(
    rt: Runtime,
    op: str,
    algorithm: str,
    group: list[Worker],
    payloads: list[list[Any]],
    kind: str,
    label: str,
    timed: bool = True,
    ranks: list[int] | None = None,
) -> tuple[list[list[Any]], float]:
    """Run ``op`` for every tensor-parallel rank over the workers of ``group``.

    ``payloads[m][i]`` is member ``m``'s array for the ``i``-th collective, which
    runs on the devices ``group[m].devices[ranks[i]]`` (``ranks`` defaults to one
    collective per rank). Returns the results in the same layout and the time
    the last collective ends (now, when ``timed`` is false: the numbers are
    needed but the time is paid elsewhere).
    """
    results: list[list[Any]] = [[] for _ in group]
    end = rt.env.now
    for i, r in enumerate(ranks or range(len(payloads[0]))):
        devices = tuple(m.devices[r] for m in group)
        layout = rt.layout_of(devices)
        outs, plan = comm.collective(op, [p[i] for p in payloads], algorithm, layout=layout)
        if timed:
            end = max(end, rt.engine.collective(plan, devices, kind, label))
        for m, out in enumerate(outs):
            results[m].append(out)
    return results, end
