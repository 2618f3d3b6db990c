"""The runtime: every worker walks its program on the engine, step after step.

One SimPy process per simulated worker (:mod:`simulator.runtime.workers`)
runs its instructions (:mod:`simulator.parallel.program`) in order. Each
instruction has a handler that does its work at the current simulated time
and returns what the process must wait for: nothing, one event, a small
process of its own, or ``(event,)`` -- wait for it, then run the instruction
again (a receive whose message is not there yet: no process to create for the
commonest wait of a pipeline). The handlers live where their story is told:

* ``COMPUTE``: :mod:`simulator.runtime.compute` (the math, then its time);
* ``SEND``, ``RECV``: :mod:`simulator.runtime.messages`, or
  :mod:`simulator.runtime.rendezvous` for a schedule of blocking messages;
* ``SYNC``, ``STEP`` and the ``nn.DataParallel`` steps: the data-parallel
  variant of the strategy (:mod:`simulator.runtime.data`), which meets the
  other replicas through :mod:`simulator.runtime.meetings`.

The runtime builds those parts and gives each only what it uses -- the
engine, the meetings, the replay, plain numbers such as the micro-batches --
never the runtime itself. It owns every piece of the run's mutable state;
when the run is over it hands back a :class:`~simulator.runtime.record.RunRecord`
that nothing can change, and which is all the metrics and pictures read.

Steps are separated by a barrier (unless ``[training] step_barrier = false``:
then each worker starts its next step when it has finished its own,
:meth:`Runtime._run_without_barrier`); each leaves a
:class:`~simulator.runtime.record.StepRecord`. A step that cannot finish
because every worker waits for something no one will ever send is found the
way SimPy signals it -- its event queue runs empty
(:class:`simpy.core.EmptySchedule`) before the step's "all done" event
fired -- and raised as :class:`~simulator.errors.DeadlockError` naming what
each worker waits for. Python's cyclic garbage collector finds nothing to
collect in a simulation and costs a fifth of its time, so it is paused
while the workers run.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterable, Iterator
from heapq import heappop
from types import MappingProxyType
from typing import Any

import numpy as np
import simpy
from simpy.core import EmptySchedule, StopSimulation

from ..comm.layout import Layouts
from ..engine import Engine, Process
from ..engine.events import until
from ..engine.trace import COMPUTE
from ..errors import DeadlockError, DeviceFailedError, DivergedError
from ..hardware.faults import Fault
from ..nn.param import gradients_in
from ..parallel.build import Plan, token_layout
from ..parallel.program import Op
from .compute import Compute
from .data import DataParallelSync, sync_for
from .experts import ExpertExchanges, exchanging_stages, expert_rank
from .fault_model import FaultModel
from .feed import Feed
from .fold import Fold, decide_fold, mirrors
from .meetings import Meetings
from .messages import Mailbox
from .pairs import Pairs
from .record import RunRecord, StepRecord, WorkerRecord
from .rendezvous import Rendezvous
from .replay import Replay
from .tally import Tally
from .workers import SimWorker

Handler = Callable[[SimWorker, tuple], Any]


class Runtime:
    """Runs a :class:`~simulator.parallel.build.Plan` for ``training.steps`` steps.

    ``fold`` (default: the plan's ``training.fold_replicas``) lets identical
    data-parallel replicas be simulated once (:mod:`simulator.runtime.fold`);
    ``faults`` are stragglers, slow links and failures (:mod:`.fault_model`).
    ``ahead`` (default True) lets workers run ahead of the engine's clock where that
    changes no time (:meth:`_process`); False waits for an event at every action.
    """

    def __init__(
        self,
        plan: Plan,
        fold: bool | None = None,
        faults: Iterable[Fault] = (),
        ahead: bool = True,
    ) -> None:
        self.plan = plan
        training = plan.training
        numerics = training.numerics
        engine = self.engine = Engine(plan.cluster, training.detail, plan.strategy.num_devices)
        self.records: list[StepRecord] = []
        self.faults = FaultModel(faults, plan.cluster, training.seed)
        if self.faults:
            engine.network.link_factor = self.faults.link_factor
        allowed = training.fold_replicas if fold is None else fold
        self.fold: Fold = decide_fold(plan, allowed, self.faults)
        if self.fold:
            engine.network.fold(mirrors(plan))
        s = plan.strategy
        self.feed = Feed(
            plan.model_config,
            training,
            plan.micro_batch_size,
            s.microbatches,
            token_layout(plan.model_config, s),
            s.tp,
        )
        self.tally = Tally()
        layouts = Layouts(plan.cluster)
        self.workers = self._simulated_workers(layouts)
        meetings = Meetings(engine, layouts)
        replay = Replay(engine, self.tally, numerics)
        replay.joins = not self.faults.failures
        self.mailbox = Mailbox(
            engine,
            replay,
            self.workers,
            plan.messages_per_replica * (1 if self.fold else s.dp),
            folded=bool(self.fold),
            scatter_gather=s.pp_scatter_gather,
            transfer_seconds=model_stage_hook(plan),
            numerics=numerics,
        )
        self.sync: DataParallelSync = sync_for(s.data_parallel)(
            plan,
            self.workers,
            engine=engine,
            meetings=meetings,
            replay=replay,
            feed=self.feed,
            tally=self.tally,
            numerics=numerics,
        )
        if self.sync.wants_marks:
            replay.hear_marks(self.sync.on_mark)
        if s.ep > 1:
            replay.hear_exchanges(ExpertExchanges(plan, engine, meetings, layouts))
        compute = Compute(
            engine,
            replay,
            self.mailbox,
            self.feed,
            self.tally,
            microbatches=s.microbatches,
            stages=plan.schedule.num_stages,
            numerics=numerics,
            exchanging=exchanging_stages(plan),
        )
        for sw in self.workers:
            sw.known = compute.known_for(sw.layout, sw.cost, expert_rank(plan, sw))
            sw.pace = self.faults.pace(sw)
        self.handlers: list[Handler | None] = [None] * len(Op)
        self.handlers[Op.COMPUTE] = compute
        self.handlers[Op.PAIR] = Pairs(engine.env, compute, s.pairs_overlap)
        p2p = Rendezvous(self.mailbox) if plan.schedule.blocking else self.mailbox
        self.handlers[Op.SEND] = p2p.send
        self.handlers[Op.RECV] = p2p.recv
        for op, handler in self.sync.handlers().items():
            self.handlers[op] = handler
        #: per op, its handler at the worker's own clock (:meth:`_process`): a run whose
        #: pipeline messages take no time, shape-only, without faults
        self.early: list[Callable[[SimWorker, tuple], Any] | None] = [None] * len(Op)
        #: instructions run so far, what :attr:`estimated_events` counts (the progress bar)
        self.walked = 0
        free = self.mailbox.all_free(plan.schedule.num_stages)
        if ahead and free and not numerics and not self.faults and not plan.schedule.blocking:
            self.early[Op.COMPUTE] = compute.ahead
            self.early[Op.SEND] = self.mailbox.send_ahead
            self.early[Op.RECV] = self.mailbox.recv
        for when, device in self.faults.failures:
            engine.env.process(self._fail(device, when))
        self._result: RunRecord | None = None

    @property
    def estimated_events(self) -> int:
        """About how many events the run will process: every simulated worker's
        instructions, once per step (each costs about one event,
        :mod:`simulator.runtime.messages`)."""
        return sum(len(sw.program) for sw in self.workers) * self.plan.training.steps

    def _simulated_workers(self, layouts: Layouts) -> list[SimWorker]:
        plan, engine = self.plan, self.engine
        if self.fold:
            groups = [plan.dp_group(r) for r in range(plan.strategy.pp)]
        else:
            groups = [[w] for w in plan.workers]
        out = []
        for members in groups:
            shown = tuple(d for m in members for d in m.devices)
            out.append(
                SimWorker(
                    index=len(out),
                    members=members,
                    devices=members[0].devices,
                    shown=shown,
                    group=engine.trace.group_id(shown),
                    ledger=engine.group_ledger(shown),
                    program=members[0].program,
                    message_base=0 if self.fold else members[0].dp_rank * plan.messages_per_replica,
                    layout=layouts(members[0].devices),
                    cost=engine.cost_of(members[0].devices),
                )
            )
        return out

    # -- driving -------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> RunRecord:
        """Simulate every step and return the record of the run (:meth:`result`);
        raises DeadlockError, DivergedError, DeviceFailedError or OutOfMemoryError,
        after which :meth:`result` still holds what was simulated. ``progress`` is
        called with the number of instructions run so far (:attr:`estimated_events`
        counts them all), every few thousand events."""
        training = self.plan.training
        # a loss that overflows is reported once, as a diverged run (_check_loss),
        # rather than as numpy's warnings on the way there; the ZeRO shards made on
        # the way take the plan's gradient precision (simulator.nn.param)
        with (
            gradients_in(training.grad_precision),
            collector_paused(),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            self.sync.allocate_model_state()
            if training.step_barrier:
                for step in range(training.steps):
                    self.feed.start_step(step)
                    self.records.append(self._run_step(step, progress))
                    self._check_loss(self.records[-1], step)
            else:
                self._run_without_barrier(progress)
        for ledger in {id(x): x for x in self.engine.memory.values()}.values():
            ledger.check()
        return self.result()

    def _check_loss(self, record: StepRecord, step: int) -> None:
        loss = record.loss
        if loss is not None and not math.isfinite(loss):
            raise DivergedError(
                f"strategy {self.plan.strategy.name!r} diverged: the loss is {loss} "
                f"at step {step}; lower the learning rate ([training] lr)",
                step,
            )

    def result(self) -> RunRecord:
        """What the run left, frozen (see :class:`~.record.RunRecord`): the trace is
        sealed, so call this only when the simulation is over."""
        if self._result is None:
            engine = self.engine
            memory = engine.memory_records()
            engine.trace.seal(memory)
            self._result = RunRecord(
                steps=tuple(self.records),
                trace=engine.trace,
                memory=MappingProxyType(memory),
                end=engine.env.now,
                fold=self.fold,
                stragglers=MappingProxyType(dict(self.faults.stragglers)),
                failed=MappingProxyType(
                    {sw.failed[0]: sw.failed[1] for sw in self.workers if sw.failed}
                ),
            )
        return self._result

    def _run_step(self, step: int, progress: Callable[[int], None] | None) -> StepRecord:
        engine = self.engine
        env = engine.env
        start = env.now
        sent_before = dict(engine.bytes_sent)
        kinds_before = dict(engine.comm_bytes)
        self.tally.start_step(step)
        self.mailbox.reset()
        for sw in self.workers:
            sw.start_step(step)
            self.sync.start_step(sw)
        for sw in self.workers:
            sw.process = env.process(self._process(sw))
        done = simpy.AllOf(env, [sw.process for sw in self.workers])
        try:
            self._drive(done, progress)
            # every worker may have stopped, none left waiting: the step still failed
            failed = next((sw for sw in self.workers if sw.failed), None)
            if failed is not None:
                raise self._failure_report(failed)
        except DeviceFailedError:
            # the step's loss was not computed in full: None, never a partial mean
            self.records.append(
                self._record(step, start, sent_before, kinds_before, complete=False)
            )
            raise
        return self._record(step, start, sent_before, kinds_before)

    def _record(
        self,
        step: int,
        start: float,
        sent_before: dict[int, int],
        kinds_before: dict[str, int],
        complete: bool = True,
    ) -> StepRecord:
        """The step from ``start`` to now (see :class:`~.record.StepRecord`)."""
        engine = self.engine
        sent, kinds = engine.bytes_sent, engine.comm_bytes
        return self._step_record(
            step,
            start,
            engine.env.now,
            tuple(self._worker_record(sw) for sw in self.workers),
            {d: b - sent_before.get(d, 0) for d, b in sent.items()},
            {k: v - kinds_before.get(k, 0) for k, v in kinds.items()},
            complete,
        )

    def _step_record(
        self,
        step: int,
        start: float,
        end: float,
        workers: tuple[WorkerRecord, ...],
        sent: dict[int, int],
        kinds: dict[str, int],
        complete: bool = True,
    ) -> StepRecord:
        tally = self.tally
        model_flops, hardware_flops = tally.step_flops[step]
        return StepRecord(
            start=start,
            end=end,
            loss=tally.mean_loss(step) if self.plan.training.numerics and complete else None,
            model_flops=model_flops,
            hardware_flops=hardware_flops,
            workers=workers,
            bytes_sent=MappingProxyType(sent),
            comm_bytes=MappingProxyType(kinds),
            action_seconds=MappingProxyType(dict(tally.action_seconds)),
            folded_replicas=self.fold.replicas,
            tokens_per_expert=MappingProxyType(
                {k: tuple(v) for k, v in tally.tokens.get(step, {}).items()}
            ),
        )

    def _worker_record(self, sw: SimWorker) -> WorkerRecord:
        span, idle = sw.span
        return WorkerRecord(
            sw.shown,
            sw.compute_s,
            sw.exposed_s,
            sw.peak_inflight,
            _pairs(sw.exposed),
            span,
            idle,
            self.engine.env.now,
        )

    # -- without a barrier between steps -------------------------------------------------
    def _run_without_barrier(self, progress: Callable[[int], None] | None) -> None:
        """``[training] step_barrier = false``: every worker starts its next step as soon
        as it has finished its own (Qi et al. 2024, sec. 4, optimizer post-validation).

        Nothing but the pipeline's messages and the collectives holds a worker back,
        so later steps show the steady state. Step ``k`` runs from the moment the
        last worker finished step ``k-1`` to the moment the last one finished step
        ``k``: in steady state, the period of the pipeline. Each worker's parts
        are those of its own step ``k``. Every step runs the same programs over the
        same links, so it sends the same bytes: each step's bytes are the run's
        divided by the steps.

        Two steps may be under way at once, never three: a worker that sends a
        message of step ``k+1`` has finished step ``k``, which it could not do before
        its neighbours had taken all their messages of step ``k`` -- so a message's
        slot (:mod:`.messages`) and a collective's meeting are never claimed by two
        steps at once, and each worker's data, losses and FLOPs are counted in the
        step it is in (:meth:`.feed.Feed.enter`, :class:`.tally.Tally`).
        """
        engine, env = self.engine, self.engine.env
        steps = self.plan.training.steps
        start = env.now
        sent_before = dict(engine.bytes_sent)
        kinds_before = dict(engine.comm_bytes)
        self.mailbox.reset()
        for step in range(steps):
            self.tally.start_step(step)
        rows: list[list[WorkerRecord | None]] = [[None] * len(self.workers) for _ in range(steps)]
        for sw in self.workers:
            sw.process = env.process(self._steps_of(sw, rows))
        done = simpy.AllOf(env, [sw.process for sw in self.workers])
        failure = None
        try:
            self._drive(done, progress)
            failed = next((sw for sw in self.workers if sw.failed), None)
            if failed is not None:
                failure = self._failure_report(failed)
        except DeviceFailedError as error:
            failure = error
        finished = [r for r in rows if all(w is not None for w in r)]
        sent = {d: (b - sent_before.get(d, 0)) // steps for d, b in engine.bytes_sent.items()}
        kinds = {k: (v - kinds_before.get(k, 0)) // steps for k, v in engine.comm_bytes.items()}
        previous = start
        for step, row in enumerate(finished):
            workers = tuple(w for w in row if w is not None)
            end = max(w.end for w in workers)
            self.records.append(self._step_record(step, previous, end, workers, sent, kinds))
            previous = end
        if failure is not None:
            raise failure
        for step, record in enumerate(self.records):
            self._check_loss(record, step)

    def _steps_of(self, sw: SimWorker, rows: list[list[WorkerRecord | None]]) -> Process:
        """``sw``'s process without a barrier: its program, step after step."""
        for step in range(len(rows)):
            sw.start_step(step)
            self.feed.enter(sw.members, step)
            self.sync.start_step(sw)
            yield from self._process(sw)
            if sw.failed:
                return
            rows[step][sw.index] = self._worker_record(sw)

    def _drive(self, done: simpy.Event, progress: Callable[[int], None] | None) -> None:
        """Process events until ``done`` fires (SimPy's own ``run(until=...)`` loop, with a
        progress report, the instructions run, every few thousand events); an empty
        queue first is a deadlock.

        The loop is :meth:`simpy.Environment.step`, written out: it runs once per event
        of the run."""
        env = self.engine.env
        queue = env._queue
        done.callbacks.append(StopSimulation.callback)
        events = 0
        try:
            while True:
                for _ in range(4096):
                    try:
                        env._now, _, _, event = heappop(queue)
                    except IndexError:
                        raise EmptySchedule from None
                    callbacks, event.callbacks = event.callbacks, None
                    for callback in callbacks:
                        callback(event)
                    if not event._ok and not hasattr(event, "_defused"):
                        # a failed event no one handled (env.step raises a copy of it)
                        failure = type(event._value)(*event._value.args)
                        failure.__cause__ = event._value
                        raise failure
                events += 4096
                if progress is not None:
                    progress(self.walked)
        except StopSimulation:
            if progress is not None:
                progress(self.walked)
            return
        except EmptySchedule:
            failed = next((sw for sw in self.workers if sw.failed), None)
            if failed is not None:
                raise self._failure_report(failed) from None
            raise DeadlockError(self._deadlock_report()) from None

    def _process(self, sw: SimWorker) -> Process:
        """``sw``'s program, instruction by instruction. A handler returns what to wait
        for: nothing, an event, a process, or ``(event,)`` -- wait for the event, then
        run the same instruction again (a receive whose message is not there yet).

        **Running ahead.** When no pipeline message takes time (:attr:`early`), a
        worker keeps a clock of its own: a known compute moves it on instead of
        waiting for a timeout, and its free messages are sent and taken at it, the
        engine's clock (``env._now``) set to it while the worker runs. Nothing
        another worker reads is then out of time order: each worker's compute,
        memory and trace rows are its own, a message carries its arrival time, and a
        free message holds no lane. A worker waits on the engine only for a message
        not sent yet; before any other instruction -- a collective, a timed
        message, a first action -- and at the end of its program, the engine
        catches up with its clock (one event). The times are those of waiting at
        every step: only the events are fewer (docs/design.md, key decision 8)."""
        handlers, early = self.handlers, self.early
        env = self.engine.env
        Event = simpy.Event
        now = clock = env._now  # the engine's clock, and the worker's (never behind it)
        walked = 0  # instructions run ahead since the last wait, added to self.walked at it
        try:
            for ins in sw.program:
                ahead = early[ins[0]]
                if ahead is not None:  # env._now is the worker's clock here
                    done = ahead(sw, ins)
                    while done.__class__ is tuple:  # a message not sent yet
                        self.walked += walked
                        walked = 0
                        env._now = now
                        yield done[0]
                        now = env._now
                        if clock > now:
                            env._now = clock
                        else:
                            clock = now
                        done = ahead(sw, ins)
                    if done is None:
                        walked += 1
                        continue
                    if done is not False:
                        walked += 1
                        clock = done
                        continue
                if walked:
                    self.walked += walked
                    walked = 0
                if clock > now:  # the engine catches up first
                    env._now = now
                    yield until(env, clock)
                handler = handlers[ins[0]]
                waits = handler(sw, ins)
                if waits is not None:
                    if isinstance(waits, Event):
                        yield waits
                    else:
                        while waits.__class__ is tuple:
                            yield waits[0]
                            waits = handler(sw, ins)
                        if waits is not None:
                            yield from waits
                now = clock = env._now
                self.walked += 1
            self.walked += walked
            if clock > now:
                env._now = now
                yield until(env, clock)
        except simpy.Interrupt:
            return  # a device of this worker failed: it does nothing more

    def _fail(self, device: int, when: float) -> Process:
        """Device ``device`` stops at ``when``: its worker's process ends there."""
        yield self.engine.env.timeout(when)
        sw = next((sw for sw in self.workers if device in sw.shown), None)
        if sw is None or sw.failed:
            return  # the strategy does not use it (or its worker is down already)
        sw.failed = (device, when)
        sw.waiting_for = ""
        self.engine.trace.add(device, COMPUTE, when, when, "failed", "failed")
        if sw.process is not None and sw.process.is_alive:
            sw.process.interrupt("device failed")

    def _failure_report(self, failed: SimWorker) -> DeviceFailedError:
        device, when = failed.failed
        waits = "; ".join(
            f"{sw.describe()} waits for {self._waits(sw)}"
            for sw in self.workers
            if sw.waiting_for and sw is not failed
        )
        started = self.records[0].start if self.records else 0.0
        lost = when - started
        return DeviceFailedError(
            f"strategy {self.plan.strategy.name!r}: device {device} failed at "
            f"{when * 1e3:.3f} ms, in step {self.feed.step}, and {failed.describe()} stopped; "
            f"left waiting: {waits or 'no one'}. The run keeps no checkpoint, so all "
            f"{lost * 1e3:.3f} ms of simulated training since it started are lost (see "
            "`python -m simulator goodput` for how often to checkpoint)",
            device,
            when,
        )

    def _waits(self, sw: SimWorker) -> str:
        waiting = sw.waiting_for
        return waiting if isinstance(waiting, str) else self.mailbox.describe_wait(sw, waiting)

    def _deadlock_report(self) -> str:
        waits = "; ".join(
            f"{sw.describe()} waits for {self._waits(sw)}" for sw in self.workers if sw.waiting_for
        )
        return (
            f"strategy {self.plan.strategy.name!r} cannot make progress in step "
            f"{self.feed.step}: {waits or 'every worker waits'}. Fix the schedule so that every "
            "receive has a matching send that can happen first"
        )


def model_stage_hook(plan: Plan) -> Callable[[int, str], float | None]:
    """The model's message times by model stage: DualPipe's stage ``c + S/2`` is a copy
    of stage ``c``."""
    hook = plan.model_config.transfer_seconds
    half = plan.schedule.num_stages // plan.schedule.directions
    if plan.schedule.directions == 1:
        return hook
    return lambda stage, what: hook(stage % half, what)


def _pairs(flat: Any) -> np.ndarray:
    """``start, end, start, end, ...`` as read-only ``(start, end)`` rows."""
    out = np.array(flat, dtype=float).reshape(-1, 2)
    out.flags.writeable = False
    return out


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (the simulation's objects are long-lived)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
