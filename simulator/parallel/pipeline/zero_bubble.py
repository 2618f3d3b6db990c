"""ZB-H1 and ZB-H2: the handcrafted zero-bubble schedules of Qi et al. (2024).

Qi, Wan, Huang and Lin, "Zero Bubble Pipeline Parallelism", ICLR 2024.
Their observation: the backward of a stage is two computations, B (the
gradient with respect to the stage's input, which the previous stage waits
for) and W (the gradient with respect to the weights, which nobody waits
for). Only F and B sit on the critical path from stage to stage; W can be
moved into the holes that 1F1B leaves (sec. 2, fig. 2).

Both schedules are 1F1B with two knobs per rank ``i`` (stage ``i``):

* ``warmup(i)`` forwards before the first backward;
* ``delay(i)``: the W of micro-batch ``k`` runs right after the B of
  micro-batch ``k + delay(i)``, so ``delay(i)`` weight gradients are pending;
  the leftover W's close the step.

In steady state rank ``i`` repeats ``F(k + warmup), B(k), W(k - delay)``.
A stash lives from its F to its W, so rank ``i`` holds up to
``warmup(i) + 1 + delay(i)`` micro-batches.

**ZB-H1** (sec. 2.1, fig. 3 top): ``warmup = p-1-i`` as in 1F1B and
``delay = i``. Every rank holds ``p`` micro-batches, exactly the first stage
of 1F1B, so peak memory equals 1F1B's (``p M_B``, Table 2); the later
stages use their spare memory to delay W into the cool-down, which lets the
B's travel up the pipeline without waiting for W's.

**ZB-H2** (sec. 2.2, fig. 3 bottom): ``warmup = 2(p-1-i)`` and
``delay = 2i``. The extra forwards fill the wait before the first B arrives,
the extra delay turns the cool-down from a trapezoid into a parallelogram;
every rank holds ``2p-1`` micro-batches (``(2p-1) M_B``, Table 2).

The closed forms below were derived on the timeline where every F takes
``T_F``, B ``T_B`` and W ``T_W`` on every stage and communication is free.
The bubble time is the step -- from the first forward to the last action of
any rank -- minus the ``m (T_F+T_B+T_W)`` every rank computes, as the
simulator measures it (docs/design.md, "Definitions"). Qi et al.'s Table 2 counts
the idle time inside the longest *rank's span* instead, which leaves out
that later ranks start later: for ZB-H1 the two agree, for ZB-H2 the step
can be longer than any span. The simulator reports that rate too
(``pipeline_bubble_rate``), and without a barrier between steps
(``[training] step_barrier = false``) the step reaches it in steady state.
Both closed forms are verified against that timeline and against the
simulator (``tests/parallel/pipeline/test_schedules.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from .actions import Action, B, F, W
from .schedules import ScheduleInfo, bubble_from_time, register


def handcrafted(
    p: int, m: int, warmup: Callable[[int], int], delay: Callable[[int], int]
) -> list[list[Action]]:
    """The 1F1B family with split backward; see the module docstring for the knobs."""
    rows = []
    for i in range(p):
        ahead = min(warmup(i), m)
        row = [Action(i, F, k) for k in range(ahead)]
        weights = 0
        for k in range(m):
            if ahead + k < m:
                row.append(Action(i, F, ahead + k))
            row.append(Action(i, B, k))
            if k >= delay(i):
                row.append(Action(i, W, weights))
                weights += 1
        row += [Action(i, W, k) for k in range(weights, m)]
        rows.append(row)
    return rows


def _zb_h1(p: int, m: int, v: int) -> list[list[Action]]:
    return handcrafted(p, m, lambda i: p - 1 - i, lambda i: i)


def _zb_h2(p: int, m: int, v: int) -> list[list[Action]]:
    return handcrafted(p, m, lambda i: 2 * (p - 1 - i), lambda i: 2 * i)


def zb_h1_bubble(p: int, m: int, v: int, t_f: float, t_b: float, t_w: float) -> float | None:
    """ZB-H1's bubble: time ``(p-1)(T_F+T_B) - (min(m,p)-1) min(T_F,T_W)``.

    With ``m >= p`` the first rank waits ``(p-1) T_B`` for its first B (the
    B's travel up without W's) and ``max(0, T_F - T_W)`` before each of its
    last ``p-1`` B's (where 1F1B's cool-down had the next stage still running
    a forward; the W that stage delayed covers ``T_W`` of it). For
    ``T_W <= T_F`` this is Table 2's ``(p-1)(T_F+T_B-T_W)`` (Qi et al. 2024),
    a third of 1F1B's ``(p-1)(T_F+T_B+T_W)`` when the three are equal. The
    first rank finishes last, so the formula is the step's bubble, for every
    ``m >= 1``, as long as ``T_W <= T_B`` (with a slower W, rank ``i``'s ``i``
    delayed W's end after the first rank's last one); None otherwise.
    """
    if t_w > t_b:
        return None
    time = (p - 1) * (t_f + t_b) - (min(m, p) - 1) * min(t_f, t_w)
    return bubble_from_time(m, t_f, t_b, t_w, time)


def zb_h2_bubble(p: int, m: int, v: int, t_f: float, t_b: float, t_w: float) -> float | None:
    """ZB-H2's bubble: ``(p-1) max(T_F, max(0, T_B-T_F) + max(0, T_F + min(T_F,T_B) - 2T_W))``.

    Inside the first rank's span: ``(p-1) max(0, T_B-T_F)``, its wait for its
    first B when B is slower than F (its ``2p-1`` warm-up forwards then end
    before the B arrives), plus ``(p-1) max(0, T_F + min(T_F,T_B) - 2 T_W)``,
    the cool-down the delayed W's cannot fill. When ``2 T_W <= T_F +
    min(T_F, T_B)`` that is Table 2's ``(p-1)(T_F+T_B-2T_W)`` (Qi et al.
    2024), zero for ``T_F = T_B = T_W``. But the last rank starts ``(p-1)
    T_F`` after the first and has no idle time of its own, so it ends the
    step that much after it started: the step's bubble is the larger of the
    two (``(p-1) T_F`` when the three times are equal, where the spans alone
    would say zero). Needs ``m >= 2p-1`` so the first rank has enough
    forwards to fill its warm-up; None below that.
    """
    if m < 2 * p - 1:
        return None
    inside = (p - 1) * (max(0, t_b - t_f) + max(0, t_f + min(t_f, t_b) - 2 * t_w))
    return bubble_from_time(m, t_f, t_b, t_w, max((p - 1) * t_f, inside))


register(
    ScheduleInfo(
        "zb-h1",
        _zb_h1,
        "1F1B memory, W delayed into the cool-down (Qi et al. 2024, ZB-H1)",
        split_backward=True,
        bubble=zb_h1_bubble,
        checked=True,
    )
)
register(
    ScheduleInfo(
        "zb-h2",
        _zb_h2,
        "2p-1 micro-batches in flight, no bubble when F=B=W (Qi et al. 2024, ZB-H2)",
        split_backward=True,
        bubble=zb_h2_bubble,
        checked=True,
    )
)
