"""Programs are data: the instructions one worker runs in one training step.

A strategy lowers to one list of instructions per worker (docs/design.md, key
decision 4); the runtime (:mod:`simulator.runtime`) executes them, and
:func:`describe` prints them, so a listing shows exactly what a worker does
and in which order.

An instruction is a small tuple whose first element is its :class:`Op`:

* ``(COMPUTE, action, inbox, outbox, sends, kind)``: run a pipeline action
  (``F``, ``B``, ``W`` or the full backward ``BW`` of one stage and
  micro-batch). ``inbox`` and ``outbox`` are the message ids of what it takes
  (the activation from the previous stage, or the gradient from the next one)
  and of what it produces for the neighbouring stage, -1 for none; ``sends``
  says whether the next instruction sends the product to another rank
  (otherwise the neighbouring stage is on this rank and takes it from there);
  ``kind`` numbers the action's stage and kind, :func:`action_kind`, the same
  for every micro-batch;
* ``(SEND, what, stage, mb, peer, message)`` and
  ``(RECV, what, stage, mb, peer, message)``: an activation (``what = 0``)
  or gradient (``1``) of a stage and micro-batch, to or from the worker of
  pipeline rank ``peer`` of the same replica;
* ``(PAIR, forward, backward)``: two ``COMPUTE`` instructions run overlapped
  as one unit (an ``F&B`` pair of DualPipe, :mod:`simulator.runtime.pairs`):
  their receives come before it, their sends after it;
* ``(SYNC,)``: make the data-parallel replicas' gradients agree;
* ``(STEP,)``: update the parameters this worker owns;
* the steps of ``nn.DataParallel`` (:mod:`simulator.parallel.data.replicated`).

Tuples, not objects: a 64-stage pipeline of 512 micro-batches has 200,000
instructions, built in a blink and small in memory. Programs name pipeline
*ranks* and per-replica message ids, so every data-parallel replica shares
its pipeline rank's program.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from .pipeline.actions import KINDS, Action, Item, Kind, Pair, Schedule

ACTIVATION, GRADIENT = 0, 1
WHAT = ("activation", "gradient")


class Op(IntEnum):
    """The instruction set (see the module docstring)."""

    COMPUTE = 0
    SEND = 1
    RECV = 2
    SYNC = 3
    STEP = 4
    # nn.DataParallel, step by step (simulator.parallel.data.replicated)
    REPLICATE = 5
    SCATTER_INPUTS = 6
    FORWARD_BODY = 7
    GATHER_OUTPUTS = 8
    LOSS_ON_PRIMARY = 9
    SCATTER_GRADS = 10
    BACKWARD_BODY = 11
    REDUCE_GRADS = 12
    PRIMARY_STEP = 13
    PAIR = 14


COMPUTE, SEND, RECV, SYNC, STEP, PAIR = Op.COMPUTE, Op.SEND, Op.RECV, Op.SYNC, Op.STEP, Op.PAIR

_TEXT = {
    Op.SYNC: "sync grads",
    Op.STEP: "optimizer step",
    Op.REPLICATE: "broadcast parameters from the primary",
    Op.SCATTER_INPUTS: "scatter the inputs from the primary",
    Op.FORWARD_BODY: "forward (no loss)",
    Op.GATHER_OUTPUTS: "gather the outputs on the primary",
    Op.LOSS_ON_PRIMARY: "loss and its gradient (primary only)",
    Op.SCATTER_GRADS: "scatter the output gradients from the primary",
    Op.BACKWARD_BODY: "backward",
    Op.REDUCE_GRADS: "reduce the gradients onto the primary",
    Op.PRIMARY_STEP: "optimizer step (primary only)",
}


def action_kind(action: Action) -> int:
    """``4 stage + k`` for kind ``k`` of ``F``, ``B``, ``W``, ``BW``: a small number per
    (stage, kind), for tables that are the same for every micro-batch."""
    return 4 * action.stage + KINDS.index(action.kind)


def message_id(what: int, stage: int, mb: int, num_stages: int, microbatches: int) -> int:
    """A per-replica number for the activation or gradient of ``stage`` and ``mb``."""
    return (what * num_stages + stage) * microbatches + mb


def describe(ins: tuple, worker_of_rank: dict[int, int] | None = None) -> str:
    """One instruction in words; ``worker_of_rank`` maps pipeline ranks to worker
    indices, to name the peer of a message."""
    op = ins[0]
    if op == COMPUTE:
        return str(ins[1])
    if op == PAIR:
        return f"{ins[1][1]}&{ins[2][1]} (overlapped)"
    if op in (SEND, RECV):
        _, what, stage, mb, peer, _ = ins
        who = (worker_of_rank or {}).get(peer, peer)
        arrow = "->" if op == SEND else "<-"
        return f"{'send' if op == SEND else 'recv'} {WHAT[what]} {stage}/{mb} {arrow} w{who}"
    return _TEXT[Op(op)]


def _lowering(
    rank: int, stage_rank: dict[int, int], microbatches: int, directions: int
) -> Callable[[Action], tuple[tuple | None, tuple, tuple | None]]:
    """``one(action)``: the receive, the compute and the send of one action of ``rank``
    (None where the neighbouring stage is on the same rank, or there is none)."""
    last = len(stage_rank) - 1
    per = (last + 1) // directions
    m = microbatches
    gradients = (last + 1) * m  # message ids: activations first, then gradients
    kind_code = {kind: i for i, kind in enumerate(KINDS)}
    # per stage, once: the rank before and after it, when that is another rank
    before = [stage_rank[s - 1] if s % per and stage_rank[s - 1] != rank else -1
              for s in range(last + 1)]  # fmt: skip
    after = [stage_rank[s + 1] if (s + 1) % per and stage_rank[s + 1] != rank else -1
             for s in range(last + 1)]  # fmt: skip

    def one(a: Action) -> tuple[tuple | None, tuple, tuple | None]:
        s, kind, k = a
        code = 4 * s + kind_code[kind]
        if kind == Kind.F:
            inbox = (s - 1) * m + k if s % per else -1
            outbox = s * m + k if (s + 1) % per else -1
            src, dst = before[s], after[s]
            recv = (RECV, ACTIVATION, s - 1, k, src, inbox) if src >= 0 else None
            send = (SEND, ACTIVATION, s, k, dst, outbox) if dst >= 0 else None
            return recv, (COMPUTE, a, inbox, outbox, dst >= 0, code), send
        if kind == Kind.W:
            return None, (COMPUTE, a, -1, -1, False, code), None
        inbox = gradients + (s + 1) * m + k if (s + 1) % per else -1
        outbox = gradients + s * m + k if s % per else -1
        src, dst = after[s], before[s]
        recv = (RECV, GRADIENT, s + 1, k, src, inbox) if src >= 0 else None
        send = (SEND, GRADIENT, s, k, dst, outbox) if dst >= 0 else None
        return recv, (COMPUTE, a, inbox, outbox, dst >= 0, code), send

    return one


def lower(
    actions: list[Item],
    rank: int,
    stage_rank: dict[int, int],
    microbatches: int,
    directions: int = 1,
) -> list[tuple]:
    """One pipeline rank's actions -> instructions, with the messages they imply.

    An ``F`` receives its input from the rank of the previous stage and sends
    its output to the rank of the next one; a backward (``B`` or ``BW``)
    receives the gradient of its output from the next stage's rank and sends
    the gradient of its input back. Stages on the same rank hand over through
    the worker's own buffers, without a message. The first and last stages of
    each of the ``directions`` pipelines take their input from the data and
    their gradient from the loss. An ``F&B`` pair receives what both halves
    need, runs them as one ``PAIR`` and sends both products. Linear in the
    actions.
    """
    one = _lowering(rank, stage_rank, microbatches, directions)
    program: list[tuple] = []
    append = program.append
    for item in actions:
        if isinstance(item, Pair):
            halves = [one(a) for a in item.parts]
            # a pair's products leave when it ends: no send overlaps it (``sends`` false)
            program += [recv for recv, _, _ in halves if recv is not None]
            append((PAIR, *((*c[:4], False, *c[5:]) for _, c, _ in halves)))
            program += [send for _, _, send in halves if send is not None]
            continue
        recv, compute, send = one(item)
        if recv is not None:
            append(recv)
        append(compute)
        if send is not None:
            append(send)
    program += [(SYNC,), (STEP,)]
    return program


def lowered(schedule: Schedule, rank: int, microbatches: int) -> list[tuple]:
    """Rank ``rank``'s program of ``schedule`` (:func:`lower`, or :func:`lower_steps` for
    a schedule of blocking messages), lowered once per schedule and kept on it: a
    schedule never changes, and nothing changes a program once lowered, so the
    plans of one schedule share its programs."""
    cache = schedule.__dict__.setdefault("_programs", {})
    key = (rank, microbatches)
    program = cache.get(key)
    if program is None:
        stage_rank = schedule.stage_to_rank()
        if schedule.blocking:
            program = lower_steps(schedule.ranks[rank], rank, stage_rank, microbatches)
        else:
            program = lower(
                schedule.items(rank), rank, stage_rank, microbatches, schedule.directions
            )
        cache[key] = program
    return program


def lower_steps(
    steps: tuple[Item | None, ...], rank: int, stage_rank: dict[int, int], microbatches: int
) -> list[tuple]:
    """One rank's *steps* -> instructions, for a schedule of blocking messages
    (:attr:`~.pipeline.actions.Schedule.blocking`; DeepSpeed's ``TrainSchedule``,
    :mod:`.pipeline.deepspeed`).

    A step exchanges its messages, then computes its action (``None``: nothing).
    What the step before computed is sent in this step; what this step's action
    needs is received in it. Both go to the neighbour that does the other kind
    of pass in this step, in DeepSpeed's order, so that the two sides of every
    blocking send and receive come in the same order on both ranks: a forward
    step sends (the gradient) before it receives (the activation), a backward
    step receives (the gradient) before it sends (the activation). The compute
    does not send its product itself (``sends`` false): the next step does.
    """
    one = _lowering(rank, stage_rank, microbatches, 1)
    program: list[tuple] = []
    pending: tuple | None = None  # the send of the step before's product
    for item in steps:  # actions or idle steps (no overlapped pairs)
        if item is None:
            if pending is not None:
                program.append(pending)
            pending = None
            continue
        recv, compute, send = one(item)  # type: ignore[arg-type]
        order = (pending, recv) if item.kind == Kind.F else (recv, pending)
        program += [ins for ins in order if ins is not None]
        program.append((*compute[:4], False, *compute[5:]))
        pending = send
    if pending is not None:
        program.append(pending)
    program += [(SYNC,), (STEP,)]
    return program
