"""Interleaved 1F1B: Megatron-LM's schedule with ``v`` model chunks per rank.

Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU
Clusters Using Megatron-LM" (SC21), sec. 2.2.2 and fig. 4 (bottom).

Instead of one contiguous block of layers, every rank holds ``v`` smaller
chunks, placed in a loop: chunk ``c`` (of ``p v``) lives on rank ``c mod p``,
so a micro-batch visits every rank ``v`` times. Each chunk is ``1/v`` of a
stage, so the pipeline fills and drains ``v`` times faster and the bubble
shrinks ``v``-fold, ``(p-1)(t_f+t_b)/v`` in time or ``(p-1)/(v m + p-1)`` of
the step, at the price of ``v`` times more point-to-point messages.

The order, as Megatron-LM's ``forward_backward_pipelining_with_interleaving``
runs it: rank ``r`` walks a list of ``v m`` *virtual* micro-batches in
groups of ``p``: forward number ``k`` is micro-batch
``(k // (p v)) p + k mod p`` on its local chunk ``(k // p) mod v``, and
backward number ``k`` the same micro-batch on local chunk
``v - 1 - (k // p) mod v``. The rank runs ``2 (p-r-1) + (v-1) p`` warm-up
forwards (all of them if there are fewer), then alternates one forward and
one backward, then drains the remaining backwards. Grouping by ``p`` needs
``m`` to be a multiple of ``p`` (Megatron-LM imposes the same rule).

Backward is not split (B and W run fused). With equal chunks and free
communication the bubble is exactly ``(p-1)/(v m + p-1)`` for every ratio of
forward to backward time (checked by ``tests/parallel/pipeline/test_schedules.py``).
"""

from __future__ import annotations

from ...errors import LayoutError
from .actions import BW, Action, F, Kind
from .schedules import ScheduleInfo, register


def _rules(p: int, m: int, v: int) -> None:
    if m % p:
        raise LayoutError(
            f"interleaved 1F1B runs micro-batches in groups of pp = {p}, so microbatches must "
            f"be a multiple of {p} (got {m}); Megatron-LM has the same rule "
            "(Narayanan et al. 2021, sec. 2.2.2)"
        )


def _interleaved(p: int, m: int, v: int) -> list[list[Action]]:
    total = m * v

    def virtual(k: int, r: int, kind: Kind) -> Action:
        local = (k // p) % v
        if kind == BW:
            local = v - 1 - local
        return Action(local * p + r, kind, (k // (p * v)) * p + k % p)

    rows = []
    for r in range(p):
        warmup = min(2 * (p - r - 1) + (v - 1) * p, total)
        row = [virtual(k, r, F) for k in range(warmup)]
        for k in range(total - warmup):
            row += [virtual(warmup + k, r, F), virtual(k, r, BW)]
        row += [virtual(k, r, BW) for k in range(total - warmup, total)]
        rows.append(row)
    return rows


def interleaved_bubble(p: int, m: int, v: int, *_: float) -> float:
    """``(p-1)/(v m + p-1)``: Narayanan et al. 2021, sec. 2.2.2, who state it
    relative to the ideal time as ``(1/v) (p-1)/m``."""
    return (p - 1) / (v * m + p - 1)


register(
    ScheduleInfo(
        "interleaved",
        _interleaved,
        "Megatron-LM interleaved 1F1B, v chunks per rank placed in a loop",
        chunked=True,
        bubble=interleaved_bubble,
        rules=_rules,
        checked=True,
    )
)
