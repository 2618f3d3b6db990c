"""The runtime: every worker walks its program on the engine, step after step.

One SimPy process per simulated worker (:mod:`simulator.runtime.workers`)
runs its instructions (:mod:`simulator.parallel.program`) in order. Each
instruction has a handler that does its work at the current simulated time
and returns what the process must wait for: nothing, one event, or a small
process of its own. The handlers live where their story is told:

* ``COMPUTE``: :mod:`simulator.runtime.compute` (the math, then its time);
* ``SEND``, ``RECV``: :mod:`simulator.runtime.messages`;
* ``SYNC``, ``STEP`` and the ``nn.DataParallel`` steps: the data-parallel
  variant of the strategy (:mod:`simulator.parallel.data`), which meets the
  other replicas
  through :mod:`simulator.runtime.meetings`.

Steps are separated by a barrier; each leaves a
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
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation

from ..comm.layout import GroupLayout
from ..engine import Engine, Process
from ..engine.trace import COMPUTE
from ..errors import DeadlockError, DeviceFailedError, DivergedError
from ..hardware.faults import Fault
from ..parallel.build import Plan
from ..parallel.data import get_variant
from ..parallel.program import WHAT, Op
from .compute import Compute
from .faults import FaultModel
from .feed import Feed
from .fold import Fold, decide_fold, mirrors
from .meetings import Meetings
from .messages import Mailbox
from .record import StepRecord, Tally, WorkerRecord
from .replay import Replay
from .sync import DataParallelSync
from .workers import SimWorker

Handler = Callable[[SimWorker, tuple], Any]


class Runtime:
    """Runs a :class:`~simulator.parallel.build.Plan` for ``training.steps`` steps.

    ``fold`` (default: the plan's ``training.fold_replicas``) lets identical
    data-parallel replicas be simulated once (:mod:`simulator.runtime.fold`);
    ``progress`` is called with the number of events processed so far;
    ``faults`` are stragglers, slow links and failures (:mod:`.faults`).
    """

    def __init__(
        self,
        plan: Plan,
        fold: bool | None = None,
        progress: Callable[[int], None] | None = None,
        faults: Iterable[Fault] = (),
    ) -> None:
        self.plan = plan
        self.training = plan.training
        self.engine = Engine(plan.cluster, plan.training.detail)
        self.env = self.engine.env
        self.shape_only = plan.shape_only
        self.step = 0
        self.records: list[StepRecord] = []
        self.faults = FaultModel(faults, plan.cluster, plan.training.seed)
        if self.faults:
            self.engine.network.link_factor = self.faults.link_factor
        allowed = self.training.fold_replicas if fold is None else fold
        self.fold: Fold = decide_fold(plan, allowed, self.faults)
        self.progress = progress
        self.feed = Feed(plan)
        self.tally = Tally()
        self.meetings = Meetings(self.env, self.fire_at)
        if self.fold:
            self.engine.network.mirror = mirrors(plan)
        self._layouts: dict[tuple[int, ...], GroupLayout] = {}
        self.workers = self._simulated_workers()
        self._peers = {(sw.members[0].dp_rank if not self.fold else 0, sw.pp_rank): sw
                       for sw in self.workers}  # fmt: skip
        replicas = 1 if self.fold else plan.strategy.dp
        self.mailbox = Mailbox(self, plan.messages_per_replica * replicas)
        self.sync: DataParallelSync = get_variant(plan.strategy.data_parallel).sync(self)
        self.replay = Replay(self)
        self.compute = Compute(self)
        for sw in self.workers:
            sw.known = self.compute.known_for(sw.layout, sw.cost)
        self.handlers: list[Handler | None] = [None] * len(Op)
        self.handlers[Op.COMPUTE] = self.compute
        self.handlers[Op.SEND] = self.mailbox.send
        self.handlers[Op.RECV] = self.mailbox.recv
        for op, handler in self.sync.handlers().items():
            self.handlers[op] = handler
        for sw in self.workers:
            sw.pace = self.faults.pace(sw)
        for when, device in self.faults.failures:
            self.env.process(self._fail(device, when))

    @property
    def losses(self) -> list[float | None]:
        """The mean loss of every step simulated so far (None shape-only)."""
        return [r.loss for r in self.records]

    def layout_of(self, devices: tuple[int, ...]) -> GroupLayout:
        """Where a group on ``devices`` sits, relabelled (what its collectives depend on)."""
        layout = self._layouts.get(devices)
        if layout is None:
            layout = GroupLayout.of(self.plan.cluster, devices).relabelled()
            self._layouts[devices] = layout
        return layout

    def _simulated_workers(self) -> list[SimWorker]:
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
                    layout=self.layout_of(members[0].devices),
                    cost=engine.cost_of(members[0].devices),
                )
            )
        return out

    # -- driving -------------------------------------------------------------------------
    def run(self) -> None:
        """Simulate every step; raises DeadlockError, DivergedError or OutOfMemoryError."""
        self.sync.allocate_model_state()
        with collector_paused():
            for step in range(self.training.steps):
                self.step = step
                self.records.append(self._run_step())
                loss = self.records[-1].loss
                if loss is not None and not math.isfinite(loss):
                    raise DivergedError(
                        f"strategy {self.plan.strategy.name!r} diverged: the loss is {loss} "
                        f"at step {step}; lower the learning rate ([training] lr)",
                        step,
                    )
        for ledger in {id(x): x for x in self.engine.memory.values()}.values():
            ledger.check()

    def _run_step(self) -> StepRecord:
        env, engine = self.env, self.engine
        start = env.now
        sent_before = dict(engine.bytes_sent)
        kinds_before = dict(engine.comm_bytes)
        self.tally.start_step()
        self.mailbox.reset()
        for sw in self.workers:
            sw.start_step()
        for sw in self.workers:
            sw.process = env.process(self._process(sw))
        done = simpy.AllOf(env, [sw.process for sw in self.workers])
        try:
            self._drive(done)
            # every worker may have stopped, none left waiting: the step still failed
            failed = next((sw for sw in self.workers if sw.failed), None)
            if failed is not None:
                raise self._failure_report(failed)
        except DeviceFailedError:
            # the step's loss was not computed in full: None, never a partial mean
            self.records.append(self._record(start, sent_before, kinds_before, complete=False))
            raise
        return self._record(start, sent_before, kinds_before)

    def _record(
        self,
        start: float,
        sent_before: dict[int, int],
        kinds_before: dict[str, int],
        complete: bool = True,
    ) -> StepRecord:
        """The step from ``start`` to now (see :class:`~.record.StepRecord`)."""
        env, engine = self.env, self.engine
        return StepRecord(
            start=start,
            end=env.now,
            loss=None if self.shape_only or not complete else self.tally.mean_loss(),
            model_flops=self.tally.model_flops,
            hardware_flops=self.tally.hardware_flops,
            workers=tuple(
                WorkerRecord(sw.shown, sw.compute_s, sw.exposed_s, sw.peak_inflight)
                for sw in self.workers
            ),
            bytes_sent={d: b - sent_before.get(d, 0) for d, b in engine.bytes_sent.items()},
            comm_bytes={k: v - kinds_before.get(k, 0) for k, v in engine.comm_bytes.items()},
            action_seconds=dict(self.tally.action_seconds),
            folded_replicas=self.fold.replicas,
        )

    def _drive(self, done: simpy.Event) -> None:
        """Process events until ``done`` fires (SimPy's own ``run(until=...)`` loop, with a
        progress report every few thousand events); an empty queue first is a deadlock."""
        step = self.env.step
        done.callbacks.append(StopSimulation.callback)
        events = 0
        try:
            while True:
                for _ in range(4096):
                    step()
                events += 4096
                if self.progress is not None:
                    self.progress(events)
        except StopSimulation:
            return
        except EmptySchedule:
            failed = next((sw for sw in self.workers if sw.failed), None)
            if failed is not None:
                raise self._failure_report(failed) from None
            raise DeadlockError(self._deadlock_report()) from None

    def _process(self, sw: SimWorker) -> Process:
        handlers = self.handlers
        try:
            for ins in sw.program:
                waits = handlers[ins[0]](sw, ins)
                if waits is not None:
                    if isinstance(waits, simpy.Event):
                        yield waits
                    else:
                        yield from waits
        except simpy.Interrupt:
            return  # a device of this worker failed: it does nothing more

    def _fail(self, device: int, when: float) -> Process:
        """Device ``device`` stops at ``when``: its worker's process ends there."""
        yield self.env.timeout(when)
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
            f"{when * 1e3:.3f} ms, in step {self.step}, and {failed.describe()} stopped; "
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
            f"{self.step}: {waits or 'every worker waits'}. Fix the schedule so that every "
            "receive has a matching send that can happen first"
        )

    # -- services for the handlers ----------------------------------------------------------
    def fire_at(self, event: simpy.Event, when: float, value: Any = None) -> None:
        """Trigger ``event`` at time ``when`` (what ``succeed`` does, but later): one
        event, processed at that time, wakes whoever waits on it."""
        event._ok = True
        event._value = value
        self.env.schedule(event, delay=max(0.0, when - self.env.now))

    def peer(self, sw: SimWorker, pp_rank: int) -> SimWorker:
        """The simulated worker of pipeline rank ``pp_rank`` in ``sw``'s replica."""
        return self._peers[(0 if self.fold else sw.lead.dp_rank, pp_rank)]

    def transfer_seconds(self, stage: int, what: int) -> float | None:
        """A message's time when the model states it (abstract models), else None (asked
        once per channel)."""
        return self.plan.model_config.transfer_seconds(stage, WHAT[what])


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
