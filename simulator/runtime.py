"""Execute the workers' programs on the engine, with the real math.

One SimPy process per worker walks its program. Compute instructions run the
chunk's numpy code eagerly (or reuse the recorded result in shape-only mode,
where every micro-batch has the same shapes) and then *replay* the recorded
tape in simulated time: compute segments on the workers' compute streams,
tensor-parallel collectives over their links. Messages and collectives
between workers are in :mod:`simulator.exchange`. Data
parallelism (gradient synchronisation, the optimizer step, ZeRO's sharding)
is delegated to :mod:`simulator.parallel.data`.

Steps are separated by a barrier; ``iteration_time_s`` is the last step's
length. A step that cannot finish because every worker waits for something
no one will ever send raises :class:`~simulator.errors.DeadlockError` naming
what each worker waits for (SimPy's ``run(until=...)`` raises when events run
out, which is how we know).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Generator
from typing import Any

import simpy

from .engine import Engine
from .errors import DeadlockError
from .exchange import Exchange
from .nn.context import BatchInfo, batch
from .parallel.data import DataParallel
from .parallel.plan import Plan
from .parallel.program import Compute, OptimizerStep, Recv, Send, SyncGrads
from .parallel.worker import Worker
from .tape import CollectiveCall, ComputeSegment, Mark, Tape, recording

Process = Generator[simpy.Event, Any, Any]


class Runtime(Exchange):
    """Runs a :class:`~simulator.parallel.plan.Plan` for ``training.steps`` steps."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.training = plan.training
        self.engine = Engine(plan.cluster, plan.training.detail)
        self.env = self.engine.env
        self.shape_only = plan.shape_only
        self.step = 0
        self.losses: list[float | None] = []
        self.step_windows: list[tuple[float, float]] = []
        self.exposed: dict[int, float] = defaultdict(float)  # device -> s waiting on comm
        self.step_bytes_sent: list[int] = []  # per device, last step
        self.step_comm_bytes: dict[str, int] = {}  # by kind, last step
        self.model_flops = 0.0  # GEMM FLOPs of one step, every device, recompute excluded
        self.hardware_flops = 0.0
        self.action_seconds: dict[tuple[int, str], float] = {}  # (chunk, kind) -> seconds
        self.inflight: dict[int, set[tuple[int, int]]] = defaultdict(set)  # worker -> (c, mb)
        self.peak_inflight: dict[int, int] = defaultdict(int)  # worker -> most in flight
        self._waiting: dict[int, str] = {}
        self._slots: dict[tuple, simpy.Event] = {}
        self._buffers: dict[int, dict[tuple, Any]] = defaultdict(dict)
        self._stash: dict[int, dict[tuple, Any]] = defaultdict(dict)
        self._cache: dict[tuple, tuple[Any, Tape]] = {}
        self._step_losses: list[Any] = []
        self._meetings: dict[tuple, dict[str, Any]] = {}
        self._data: tuple[int, Any, Any] | None = None
        self._handlers: dict[type, Callable[[Worker, Any], Process | None]] = {
            Compute: self._compute,
            Send: self._send,
            Recv: self._recv,
        }
        if plan.strategy.data_parallel == "replicated":
            from .parallel.replicated import Replicated

            self.dp: DataParallel = Replicated(self)
        else:
            self.dp = DataParallel(self)
        self.register(SyncGrads, self.dp.sync)
        self.register(OptimizerStep, self.dp.optimizer_step)

    # -- driving ---------------------------------------------------------------------
    def run(self) -> None:
        """Simulate every step; raises DeadlockError or OutOfMemoryError."""
        self.dp.allocate_model_state()
        for step in range(self.training.steps):
            self.step = step
            self._step_losses = []
            self.model_flops = self.hardware_flops = 0.0
            self.exposed.clear()
            sent_before = list(self.engine.bytes_sent)
            kinds_before = dict(self.engine.comm_bytes)
            start = self.env.now
            procs = [self.env.process(self._worker(w)) for w in self.plan.workers]
            done = simpy.AllOf(self.env, procs)
            try:
                self.env.run(until=done)
            except RuntimeError as err:
                if "No scheduled events left" not in str(err):
                    raise
                raise DeadlockError(self._deadlock_report()) from None
            self.step_windows.append((start, self.env.now))
            self.losses.append(self._mean_loss())
            self.step_bytes_sent = [
                a - b for a, b in zip(self.engine.bytes_sent, sent_before, strict=True)
            ]
            self.step_comm_bytes = {
                k: v - kinds_before.get(k, 0) for k, v in self.engine.comm_bytes.items()
            }
        for ledger in self.engine.memory:
            ledger.check()

    def record_loss(self, value: float) -> None:
        """A micro-batch's mean loss; the step reports the mean over them."""
        self._step_losses.append(value)

    def _mean_loss(self) -> float | None:
        if self.shape_only or not self._step_losses:
            return None
        return float(sum(self._step_losses) / len(self._step_losses))

    def _deadlock_report(self) -> str:
        waits = "; ".join(
            f"worker {w} ({self._describe(w)}) waits for {what}"
            for w, what in sorted(self._waiting.items())
        )
        return (
            f"strategy {self.plan.strategy.name!r} cannot make progress in step "
            f"{self.step}: {waits}. Fix the schedule so that every receive has a "
            f"matching send that can happen first"
        )

    def _describe(self, index: int) -> str:
        w = self.plan.workers[index]
        return f"dp {w.dp_rank}, pp rank {w.pp_rank}"

    def register(self, kind: type, handler: Callable[[Worker, Any], Process | None]) -> None:
        """Run instructions of type ``kind`` with ``handler(worker, instruction)``, which
        returns a generator (it takes simulated time) or None."""
        self._handlers[kind] = handler

    def _worker(self, w: Worker) -> Process:
        for instruction in w.program:
            steps = self._handlers[type(instruction)](w, instruction)
            if steps is not None:
                yield from steps

    # -- compute ---------------------------------------------------------------------------
    def batch_info(self, w: Worker, mb: int) -> BatchInfo:
        size = self.plan.micro_batch_size
        first = (
            self.step * self.training.global_batch
            + (w.dp_rank * self.plan.strategy.microbatches + mb) * size
        )
        return BatchInfo(self.training.seed, self.step, first, size)

    def micro_batch(self, w: Worker, mb: int) -> tuple[Any, Any]:
        """Inputs and targets of micro-batch ``mb`` of this worker's replica."""
        size = self.plan.micro_batch_size
        if self._data is None or self._data[0] != self.step:
            self._data = (
                self.step,
                *self.plan.model_config.batch(
                    self.training.seed, self.step, self.training.global_batch, self.shape_only
                ),
            )
        _, x, y = self._data
        lo = (w.dp_rank * self.plan.strategy.microbatches + mb) * size
        # copies, so that a micro-batch's stash does not pin the whole global batch
        return x[lo : lo + size].copy(), y[lo : lo + size].copy()

    def run_recorded(self, key: tuple, fn: Callable[[], Any]) -> tuple[Any, Tape]:
        """Run ``fn`` on a new tape; shape-only results are computed once per ``key``."""
        if self.shape_only and key in self._cache:
            return self._cache[key]
        with recording() as tape:
            result = fn()
        if self.shape_only:
            self._cache[key] = (result, tape)
        return result, tape

    def _compute(self, w: Worker, ins: Compute) -> Process:
        a = ins.action
        chunk = w.chunks[a.stage]
        t = len(w.devices)
        stash, buffers = self._stash[w.index], self._buffers[w.index]
        tag = f"activations/c{a.stage}.mb{a.mb}"
        with batch(self.batch_info(w, a.mb)):
            if a.kind == "F":
                if a.stage == 0 or chunk.loss is not None:
                    x, y = self.micro_batch(w, a.mb)
                xs = [x] * t if a.stage == 0 else buffers.pop(("activation", a.stage - 1, a.mb))
                targets = [y] * t if chunk.loss is not None else None
                (out, ctx), tape = self.run_recorded(
                    (a.stage, "F"), lambda: chunk.forward(xs, targets)
                )
                stash[(a.stage, a.mb)] = ctx
                self._charge(w, tag, lambda r: chunk.stash_bytes(ctx, r))
                live = self.inflight[w.index]
                live.add((a.stage, a.mb))
                self.peak_inflight[w.index] = max(self.peak_inflight[w.index], len(live))
                if chunk.loss is not None:
                    if not self.shape_only:
                        self.record_loss(float(out[0]))
                else:
                    buffers[("activation", a.stage, a.mb)] = out
            elif a.kind == "B":
                dys = (
                    None if chunk.loss is not None else buffers.pop(("gradient", a.stage + 1, a.mb))
                )
                ctx = stash.pop((a.stage, a.mb))
                scale = 1.0 / self.plan.strategy.microbatches
                if ins.fused:
                    dxs, tape = self.run_recorded(
                        (a.stage, "BW"), lambda: chunk.backward(dys, ctx, scale)
                    )
                else:
                    (dxs, wctx), tape = self.run_recorded(
                        (a.stage, "B"), lambda: chunk.backward_input(dys, ctx, scale)
                    )
                    stash[(a.stage, a.mb, "W")] = wctx
                if a.stage > 0:
                    buffers[("gradient", a.stage, a.mb)] = dxs
            else:
                wctx = stash.pop((a.stage, a.mb, "W"))
                _, tape = self.run_recorded((a.stage, "W"), lambda: chunk.backward_weight(wctx))
        cat = "BW" if a.kind == "B" and ins.fused else a.kind
        start = self.env.now
        yield from self.replay(w, tape, str(a), cat, chunk=a.stage, mb=a.mb)
        self.action_seconds.setdefault((a.stage, cat), self.env.now - start)
        # activation memory lives until the backward that consumes it is done
        if a.kind == "B":
            self._release(w, tag)
            if ins.fused:
                self.inflight[w.index].discard((a.stage, a.mb))
            else:
                wtag = f"activations/c{a.stage}.mb{a.mb}.W"
                self._charge(w, wtag, lambda r: chunk.wstash_bytes(wctx, r))
        elif a.kind == "W":
            self._release(w, f"activations/c{a.stage}.mb{a.mb}.W")
            self.inflight[w.index].discard((a.stage, a.mb))

    def _charge(self, w: Worker, tag: str, bytes_of: Callable[[int], int]) -> None:
        for r, d in enumerate(w.devices):
            self.engine.memory[d].allocate(tag, bytes_of(r))

    def _release(self, w: Worker, tag: str) -> None:
        for d in w.devices:
            self.engine.memory[d].free(tag)

    def replay(self, w: Worker, tape: Tape, name: str, cat: str, **args: Any) -> Process:
        """Spend the simulated time ``tape`` describes on worker ``w``'s devices."""
        for item in tape.items:
            if isinstance(item, ComputeSegment):
                if item.seconds is None:  # priced once; shape-only tapes are replayed often
                    item.seconds = self.engine.segment_time(item)
                    item.flops = sum(k.flops for ks in item.kernels.values() for k in ks)
                flops = item.flops
                self.hardware_flops += flops
                if item.tag != "recompute":
                    self.model_flops += flops
                if item.seconds > 0:
                    yield self.engine.compute(
                        w.devices, item.seconds, name, item.tag or cat, **args
                    )
            elif isinstance(item, CollectiveCall):
                end = self.engine.collective(item.plan, w.devices, item.kind, item.label)
                yield from self.wait_for_comm(w, end, self.env.now)
            elif isinstance(item, Mark):
                hook = self.dp.on_mark(w, item)
                if hook is not None:
                    yield from hook

    def wait_for_comm(self, w: Worker, end: float, comm_start: float) -> Process:
        """Block ``w`` until ``end``; time spent while communication runs is exposed."""
        begin = self.env.now
        if end > begin:
            yield self.env.timeout(end - begin)
        self.expose(w, max(0.0, end - max(begin, comm_start)))
