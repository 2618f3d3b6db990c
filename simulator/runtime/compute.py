"""Running a pipeline action: the real math, then its time on the devices.

``COMPUTE`` runs ``F``, ``B``, ``W`` or the full backward ``BW`` of one stage
and micro-batch on a simulated worker, in two halves:

1. **The math.** The chunk's numpy code runs eagerly for every member the
   worker stands for. Its input comes from the worker's buffers (under the
   instruction's ``inbox`` message id), its product goes back there (under
   ``outbox``), its stash to the worker's stash, and the ops it ran are
   recorded on a tape, priced once (:mod:`simulator.runtime.tapes`).
2. **The time.** The tape is replayed on the worker's devices: a tape that is
   a single compute segment -- the common case -- is one timeout; otherwise
   segments, tensor-parallel collectives and data-parallel hooks take turns
   (:meth:`~simulator.runtime.replay.Replay.run`).

Memory follows the stash: a forward charges its activations when it starts,
and they are released when the backward that consumes them ends (the ``W``,
when backward is split: what ``B`` keeps for it is charged as ``B`` ends).

In shape-only mode every micro-batch of a stage has the same shapes, so the
first one runs the math and the rest reuse what it did -- its tape, its
stash and its product (:class:`Known`): a known action costs a few
dictionary operations and one timeout.

An action whose MoE layers exchange tokens with other workers (expert
parallelism, numerics) cannot run its math to the end first: the math runs in
a :class:`~simulator.runtime.experts.Bridge` and the two halves take turns,
the tape replayed piece by piece up to each exchange (:meth:`Compute.bridged`);
its activations are charged when it ends.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import simpy

from ..comm.layout import GroupLayout, placed
from ..engine import Engine
from ..engine.cost import Cost
from ..engine.events import timeout
from ..engine.memory import ACTIVATIONS
from ..nn.context import Reports, batch, collecting_reports
from ..parallel.pipeline.actions import BW, Action, B, F, Kind, W
from ..parallel.program import action_kind
from .experts import Bridge
from .feed import Feed
from .messages import Mailbox
from .replay import Replay
from .tally import Tally
from .tapes import CompiledTape, compile_tape
from .workers import SimWorker

#: bytes per rank: one number when every rank of the group holds the same
PerRank = list[int]


class Known:
    """Shape-only: what an action of one stage and kind does, for every micro-batch.

    ``fast`` says it is one segment on a worker whose ranks hold the same
    bytes: then it is replayed from these numbers alone (:meth:`Compute.known`).
    """

    __slots__ = (
        "charge",
        "compiled",
        "fast",
        "forward",
        "freed",
        "hardware_flops",
        "keeps_stash",
        "kept",
        "label",
        "model_flops",
        "output",
        "release",
        "reports",
        "seconds",
        "stash",
    )

    def __init__(
        self,
        compiled: CompiledTape,
        charge: PerRank | None,
        release: tuple[PerRank, PerRank | None] | None,
        output: list[Any] | None,
        stash: Any,
        label: int,
        kind: Kind,
        replicas: int,
        reports: Reports | None = None,
    ) -> None:
        self.compiled = compiled
        # what its MoE layers reported (a forward), per replica: None when nothing (adding
        # an empty report changes no count)
        self.reports = reports if reports is not None and (reports.aux or reports.tokens) else None
        self.charge = charge
        self.release = release
        self.output = output  # what it leaves for the next stage (per member)
        self.stash = stash  # what it leaves for its backward (F) or for its W (B)
        self.label = label
        self.forward = kind == F
        self.seconds = compiled.seconds
        self.model_flops = compiled.model_flops * replicas
        self.hardware_flops = compiled.hardware_flops * replicas
        uniform = [charge, *(release or ())]
        self.fast = compiled.simple and all(b is None or len(set(b)) == 1 for b in uniform)
        # one rank's bytes (the fast path's ranks all hold the same): freed and kept at the end
        freed, kept = release or ([0], None)
        self.freed = -freed[0]
        self.kept = kept[0] if kept else 0
        self.keeps_stash = kind == B  # the stash lives on until the W


class Compute:
    """The ``COMPUTE`` instruction (see the module docstring).

    The math reads ``feed``'s micro-batches; its time is spent on ``engine``
    through ``replay``, counted in ``tally``; products go out through ``mailbox``.
    A backward scales its gradient by ``1 / microbatches`` (the step's loss is the
    mean over them); the schedule has ``stages`` model stages.
    """

    def __init__(
        self,
        engine: Engine,
        replay: Replay,
        mailbox: Mailbox,
        feed: Feed,
        tally: Tally,
        *,
        microbatches: int,
        stages: int,
        numerics: bool,
        exchanging: frozenset[int] = frozenset(),
    ) -> None:
        self.engine = engine
        #: numerics: the stages whose actions exchange tokens with other workers
        self.exchanging = exchanging if numerics else frozenset()
        self.env = engine.env
        self.replay = replay
        self.mailbox = mailbox
        self.feed = feed
        self.tally = tally
        self.numerics = numerics
        self.scale = 1.0 / microbatches
        self.stages = stages
        self._stash_bytes: dict[tuple[int, str], PerRank] = {}
        #: shape-only, per tensor-parallel layout and kinds of device, by action kind
        #: (:func:`~simulator.parallel.program.action_kind`)
        self._known: dict[tuple[GroupLayout, Cost, int], list[Known | None]] = {}
        #: per simulated worker, what frees a known action's stash when it ends
        self._finishers: dict[int, Any] = {}
        self._record = engine.trace.record

    def known_for(self, layout: GroupLayout, cost: Cost, variant: int = 0) -> list[Known | None]:
        """What each action kind did on workers of ``layout`` whose compute ``cost``
        prices (shared by them: an H100 worker must not reuse an A100's times), and
        whose experts are ``variant``'s (expert-parallel ranks whose routing differs)."""
        kinds = 4 * self.stages
        return self._known.setdefault((layout, cost, variant), [None] * kinds)

    def __call__(self, sw: SimWorker, ins: tuple) -> simpy.Event | Any:
        now = self.env._now
        if sw.span_start < 0:  # sw.begin_action(now), written out: it runs once per action
            sw.span_start = now
            sw.busy_at_start = sw.compute_s + sw.exposed_s
        known = None if self.numerics else sw.known[ins[5]]
        if known is not None and known.fast and sw.ledger is not None and sw.pace is None:
            if sw.stream is None:  # not one half of an overlapped pair
                return self.known(sw, ins, known, now)
        elif self.exchanging and ins[1].stage in self.exchanging and ins[1].kind != W:
            return self.bridged(sw, ins)
        alone = sw.stream is None
        _, action, inbox, outbox, sends, kind = ins
        if known is None:
            compiled, charge, release = self.math(sw, action, inbox, outbox)
            label = self.replay.label(action, compiled.items[0][2] if compiled.simple else "")
            if compiled.simple:
                self.tally.action(action, compiled.seconds)
            if not self.numerics:
                self._learn(sw, action, kind, outbox, compiled, charge, release, label)
        else:
            compiled, charge, release, label = (
                known.compiled, known.charge, known.release, known.label
            )  # fmt: skip
            if known.reports is not None:
                self.tally.reports(known.reports, sw.step, len(sw.members))
            buffers, base = sw.buffers, sw.message_base
            if inbox >= 0:
                del buffers[inbox + base]
            if outbox >= 0:
                buffers[outbox + base] = known.output
        if charge is not None:
            sw.charge(self.engine, ACTIVATIONS, charge)
        if action.kind == F:
            sw.inflight += 1
            if sw.inflight > sw.peak_inflight:
                sw.peak_inflight = sw.inflight
        if not compiled.simple or not alone:
            return self._replay(sw, action, compiled, release)
        self.tally.flops(sw, compiled)
        seconds = compiled.seconds if sw.pace is None else sw.pace(compiled.seconds)
        now = self.env.now
        trace = self.engine.trace
        trace.record(trace.track_id(sw.group, label), now, now + seconds, action.mb)
        sw.compute_s += seconds
        sw.end_action(now + seconds)
        done = self.env.timeout(seconds)
        if sends:
            self.mailbox.publish(outbox + sw.message_base, done, now + seconds)
        if release is not None:
            done.callbacks.append(lambda _: self.finish(sw, action, release))
        return done

    def known(self, sw: SimWorker, ins: tuple, known: Known, now: float) -> simpy.Event:
        """A known action on a uniform worker (shape-only): its numbers, no math; its
        time is one timeout from ``now``. (The hot path of a large shape-only run:
        the bookkeeping of :meth:`__call__`, written out.)"""
        end = self._account(sw, ins, known, now)
        done = timeout(self.env, known.seconds)  # one event per action
        if ins[4]:  # it sends its product: receivers may wait on its end
            self.mailbox.publish(ins[3] + sw.message_base, done, end)
        if known.release is not None:
            sw.releasing = known
            finisher = self._finishers.get(sw.index)
            if finisher is None:
                finisher = self._finishers[sw.index] = partial(self._release, sw)
            done.callbacks.append(finisher)
        return done

    def ahead(self, sw: SimWorker, ins: tuple) -> float | bool:
        """A known action at the worker's own clock, which may be ahead of the engine's
        (:meth:`simulator.runtime.core.Runtime._process`), with no event: returns its
        end, the worker's clock after it; False when the action needs the engine --
        any action :meth:`known` would not take."""
        known = sw.known[ins[5]]
        # what __call__ asks of a known action but for sw.pace and sw.stream: no worker
        # has a pace in a run without faults, the only kind that runs ahead, and a
        # stream only while an overlapped pair runs, never between instructions
        if known is None or not known.fast or sw.ledger is None:
            return False
        env = self.env
        now = env._now
        if sw.span_start < 0:  # sw.begin_action(now), as __call__
            sw.span_start = now
            sw.busy_at_start = sw.compute_s + sw.exposed_s
        end = env._now = self._account(sw, ins, known, now)
        if known.release is not None:  # at its end, as known()'s callback does
            sw.releasing = known
            self._release(sw)
        return end

    def _account(self, sw: SimWorker, ins: tuple, known: Known, now: float) -> float:
        """Everything a known action does but wait: its buffers, memory, flops,
        trace row and compute time; returns its end."""
        _, action, inbox, outbox, _, kind = ins
        buffers, base = sw.buffers, sw.message_base
        if inbox >= 0:
            del buffers[inbox + base]
        if outbox >= 0:
            buffers[outbox + base] = known.output
        if known.charge is not None:
            sw.ledger.change(ACTIVATIONS, known.charge[0])
        if known.forward:
            sw.inflight += 1
            if sw.inflight > sw.peak_inflight:
                sw.peak_inflight = sw.inflight
        counts = self.tally.step_flops[sw.step]  # Tally.add_flops
        counts[0] += known.model_flops
        counts[1] += known.hardware_flops
        if known.reports is not None:
            self.tally.reports(known.reports, sw.step, len(sw.members))
        seconds = known.seconds
        end = now + seconds
        track = sw.tracks.get(kind)
        if track is None:
            trace = self.engine.trace
            track = sw.tracks[kind] = trace.track_id(sw.group, known.label)
        self._record(track, now, end, action.mb)
        sw.compute_s += seconds
        sw.span_end = end  # sw.end_action(end)
        sw.busy_at_end = sw.compute_s + sw.exposed_s
        return end

    @staticmethod
    def _release(sw: SimWorker, _event: Any = None) -> None:
        """When a known backward ends: free the forward's stash (and keep W's)."""
        known = sw.releasing
        change = sw.ledger.change
        change(ACTIVATIONS, known.freed)
        if known.kept:
            change(ACTIVATIONS, known.kept)
        if not known.keeps_stash:
            sw.inflight -= 1

    def bridged(self, sw: SimWorker, ins: tuple) -> Any:
        """An action that exchanges tokens with other workers (module docstring)."""
        _, action, inbox, outbox, _, _ = ins
        start = self.env.now
        bridge = Bridge(lambda: self.math(sw, action, inbox, outbox))
        try:
            while True:
                items = bridge.advance()
                if bridge.done:
                    break
                yield from self._replay_items(sw, action, items)
            compiled, charge, release = bridge.result
            if bridge.tape is None:  # it never waited: its tape is all there is
                yield from self.replay.run(sw, compiled, action)
            else:
                yield from self._replay_items(sw, action, bridge.rest())
        finally:
            bridge.cancel()
        sw.end_action(self.env.now)
        self.tally.action(action, self.env.now - start)
        if charge is not None:
            sw.charge(self.engine, ACTIVATIONS, charge)
        if action.kind == F:
            sw.inflight += 1
            sw.peak_inflight = max(sw.peak_inflight, sw.inflight)
        if release is not None:
            self.finish(sw, action, release)

    def _replay_items(self, sw: SimWorker, action: Action, items: list[Any]) -> Any:
        compiled = compile_tape(items, sw.cost, self.replay.on_mark is not None)
        yield from self.replay.run(sw, compiled, action)

    def _replay(self, sw: SimWorker, action: Action, compiled: CompiledTape, release: Any) -> Any:
        start = self.env.now
        yield from self.replay.run(sw, compiled, action)
        sw.end_action(self.env.now)
        self.tally.action(action, self.env.now - start)
        if release is not None:
            self.finish(sw, action, release)

    def finish(self, sw: SimWorker, action: Action, release: tuple[PerRank, Any]) -> None:
        """After a backward: free the forward's stash; after B, charge what W needs."""
        freed, kept = release
        engine = self.engine
        sw.charge(engine, ACTIVATIONS, [-b for b in freed])
        if kept:
            sw.charge(engine, ACTIVATIONS, kept)
        if action.kind == BW or action.kind == W:
            sw.inflight -= 1

    def _learn(
        self,
        sw: SimWorker,
        action: Action,
        kind: int,
        outbox: int,
        compiled: CompiledTape,
        charge: PerRank | None,
        release: Any,
        label: int,
    ) -> None:
        """Remember what the action did (shape-only), so the next micro-batches skip the
        math."""
        stage, what, mb = action
        output = sw.buffers.get(outbox + sw.message_base) if outbox >= 0 else None
        stash = sw.stash.get((stage, mb) if what == F else (stage, mb, W))
        reports = sw.reports if what == F else None
        sw.known[kind] = Known(
            compiled, charge, release, output, stash, label, what, len(sw.members), reports
        )

    # -- the math -----------------------------------------------------------------------
    def _each(
        self, sw: SimWorker, mb: int, work: Any, collect: bool = False
    ) -> tuple[list[Any], CompiledTape]:
        """``work(i, member)`` for every member whose numbers exist (shape-only: the first
        stands for all), under its micro-batch's context; the first member's on a tape.
        With ``collect`` (a forward) what MoE layers report goes to the tally."""
        results, compiled = [], None
        reports = Reports() if collect else None
        for i, member in enumerate(sw.members if self.numerics else sw.members[:1]):
            info = self.feed.info(member, mb)
            with batch(info), placed(sw.layout), collecting_reports(reports):
                if i == 0:
                    result, compiled = self.replay.price(lambda m=member: work(0, m), sw)
                else:
                    result = work(i, member)
            results.append(result)
        if reports is not None:  # what a mixture of experts reported
            sw.reports = reports
            self.tally.reports(reports, sw.step, 1 if self.numerics else len(sw.members))
        assert compiled is not None
        return results, compiled

    def math(
        self, sw: SimWorker, action: Action, inbox: int, outbox: int
    ) -> tuple[CompiledTape, PerRank | None, tuple[PerRank, PerRank | None] | None]:
        """Run the action's numbers for every member; returns the priced tape, the
        activation bytes to charge now (per rank) and what to release (and keep)
        when it ends."""
        stage, kind, mb = action
        base = sw.message_base
        buffers, stash = sw.buffers, sw.stash
        t = len(sw.devices)
        chunk = sw.lead.chunks[stage]
        last = chunk.loss is not None
        source = buffers.pop(inbox + base) if inbox >= 0 else None
        if kind == F:

            def forward(i: int, member: Any) -> Any:
                mine = member.chunks[stage]
                if source is None or last:
                    inputs, targets = self.feed.per_rank(member, mb)
                xs = inputs if source is None else source[i]
                return mine.forward(xs, targets if last else None)

            results, compiled = self._each(sw, mb, forward, collect=True)
            ctxs = [ctx for _, ctx in results]
            charge = self._bytes((stage, kind), lambda r: chunk.stash_bytes(ctxs[0], r), t)
            stash[(stage, mb)] = (ctxs, charge)
            if outbox >= 0:
                buffers[outbox + base] = [out for out, _ in results]
            if last and self.numerics:
                for out, _ in results:
                    self.tally.loss(float(out[0]), sw.step)
            return compiled, charge, None
        if kind == W:
            wctxs, held = self._stashed(sw, (stage, mb, W), (stage, B))
            _, compiled = self._each(sw, mb, lambda i, m: m.chunks[stage].backward_weight(wctxs[i]))
            return compiled, None, (held, None)
        # a backward: B (input gradient only) or BW (both)
        ctxs, held = self._stashed(sw, (stage, mb), (stage, F))

        def backward(i: int, member: Any) -> Any:
            mine, dys = member.chunks[stage], None if source is None else source[i]
            if kind == BW:
                return mine.backward(dys, ctxs[i], self.scale)
            return mine.backward_input(dys, ctxs[i], self.scale)

        results, compiled = self._each(sw, mb, backward)
        kept = None
        if kind == BW:
            dxs = results
        else:
            dxs = [dx for dx, _ in results]
            wctxs = [w for _, w in results]
            kept = self._bytes((stage, kind), lambda r: chunk.wstash_bytes(wctxs[0], r), t)
            stash[(stage, mb, W)] = (wctxs, kept)
        if outbox >= 0:
            buffers[outbox + base] = dxs
        return compiled, None, (held, kept)

    def _stashed(self, sw: SimWorker, key: tuple, producer: tuple[int, str]) -> Any:
        """Take what a forward (or B) left for ``key``. Shape-only, a known forward skips
        the stash: what its first micro-batch left is the same for every one."""
        entry = sw.stash.pop(key, None)
        if entry is None:
            known = sw.known[action_kind(Action(producer[0], producer[1], 0))]
            assert known is not None
            entry = known.stash
        return entry

    def _bytes(self, key: tuple[int, str], bytes_of: Any, t: int) -> PerRank:
        """``bytes_of(rank)`` for every rank (shape-only: computed once per key)."""
        cached = None if self.numerics else self._stash_bytes.get(key)
        if cached is None:
            cached = [bytes_of(r) for r in range(t)]
            if not self.numerics:
                self._stash_bytes[key] = cached
        return cached
