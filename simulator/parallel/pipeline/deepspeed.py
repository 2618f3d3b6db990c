"""DeepSpeed's pipeline engine: 1F1B in lockstep steps, with blocking messages.

DeepSpeed's ``TrainSchedule`` (``deepspeed/runtime/pipe/schedule.py``; Rasley
et al. 2020; the engine that trained MT-NLG 530B, Smith et al. 2022, sec. 2.3,
and BLOOM-176B) runs ``2 (m + p - 1)`` *steps*. At step ``t`` stage ``i`` does
one forward when ``t`` and ``i`` have the same parity and one backward
otherwise, so neighbouring stages always do opposite kinds:

* the forward of micro-batch ``b`` runs at step ``2b + i``;
* its (full) backward at step ``2b + 2p - 1 - i``;
* a step whose micro-batch is out of range is idle.

Each stage therefore runs 1F1B's order (``p - i`` forwards before its first
backward, then one forward one backward: :func:`~.schedules._one_f_one_b`);
what differs is *when* its messages move. A step first exchanges messages,
then computes. What the stage computed in the step before is sent in this one
(the activation to the next stage, the gradient to the previous one), and
what it needs now is received; both go to the same neighbour, the one that
does the other kind of pass in this step: a forward step sends the gradient,
then receives the activation, both with stage ``i - 1``; a backward step
receives the gradient, then sends the activation, both with stage ``i + 1``
(the ``SendGrad``/``RecvActivation`` and ``RecvGrad``/``SendActivation``
instructions of ``TrainSchedule.steps``). The engine sends with blocking
point-to-point calls (``deepspeed/runtime/pipe/p2p.py``: ``dist.send`` and
``dist.recv``, or a broadcast within the two ranks): a send ends only once
the neighbour has reached the matching receive and the tensor has crossed,
and the compute that follows waits for it. The simulator runs such a schedule
with :attr:`~.actions.Schedule.blocking` messages (:mod:`simulator.parallel.program`
lowers each step's sends and receives in DeepSpeed's order;
:mod:`simulator.runtime.messages` holds a sender until its receiver comes).

*What the lockstep costs.* In step ``t + 1`` the two neighbours that meet
swap the products of their step ``t`` computes, and each needs the other's for
its own step ``t + 1`` compute: the meeting waits for nothing the data does
not wait for anyway. Where only one of them has something to send (the fill
and the drain), the one that waits has nothing earlier to do. So with free
communication the steps cost exactly what 1F1B costs, for equal stages

    step time = (m + p - 1) (T_F + T_B),  bubble = (p - 1) / (m + p - 1)

(Narayanan et al. 2021, sec. 2.2.1), which the tests check on the runtime.
What blocking adds is the messages' time: both neighbours sit through every
message of a meeting, one after the other, where an asynchronous send lets the
sender compute on. Registered with ``searched = False``: the planner does not
try it unless asked, since it is never faster than ``1f1b``.
"""

from __future__ import annotations

from .actions import BW, Action, F
from .schedules import ScheduleInfo, flush_bubble, register


def _deepspeed(p: int, m: int, v: int) -> list[list[Action | None]]:
    # One cell per step, None where the step's micro-batch is out of range
    # (TrainSchedule._step_to_micro_batch: the forward micro-batch (t - i) / 2, the
    # backward one (t + i + 1) / 2 - p).
    rows = []
    for i in range(p):
        row: list[Action | None] = []
        for t in range(2 * (m + p - 1)):
            forward = (t - i) % 2 == 0
            b = (t - i) // 2 if forward else (t + i + 1) // 2 - p
            row.append(Action(i, F if forward else BW, b) if 0 <= b < m else None)
        rows.append(row)
    return rows


register(
    ScheduleInfo(
        "deepspeed",
        _deepspeed,
        "1F1B in lockstep steps with blocking sends (DeepSpeed's TrainSchedule)",
        bubble=flush_bubble,
        checked=True,
        blocking=True,
        searched=False,
    )
)
