"""Running a pipeline action: the real math, then its time on the devices.

``COMPUTE`` runs ``F``, ``B``, ``W`` or the full backward ``BW`` of one stage
and micro-batch on a simulated worker, in two halves:

1. **The math.** The chunk's numpy code runs eagerly for every member the
   worker stands for (in shape-only mode once: every micro-batch and every
   member has the same shapes, so the result is computed once per stage and
   kind and reused). Its input comes from the worker's buffers, its stash
   goes to the worker's stash, and the ops it ran are recorded on a tape,
   priced once (:mod:`simulator.runtime.tapes`).
2. **The time.** The tape is replayed on the worker's devices: a tape that is
   a single compute segment -- the common case -- is one timeout; otherwise
   segments, tensor-parallel collectives and data-parallel hooks take turns
   (:meth:`~simulator.runtime.core.Runtime.replay`).

Memory follows the stash: a forward charges its activations when it starts,
and they are released when the backward that consumes them ends (the ``W``,
when backward is split: what ``B`` keeps for it is charged as ``B`` ends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import simpy

from ..engine.memory import ACTIVATIONS
from ..nn.context import batch
from ..parallel.pipeline.actions import BW, Action, F, W
from ..parallel.program import ACTIVATION, GRADIENT
from .tapes import CompiledTape
from .workers import SimWorker

if TYPE_CHECKING:
    from .core import Runtime


class Compute:
    """The ``COMPUTE`` instruction (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.scale = 1.0 / runtime.plan.strategy.microbatches
        #: shape-only: bytes every rank stashes, per (stage, kind)
        self._stash_bytes: dict[tuple[int, str], list[int]] = {}

    def __call__(self, sw: SimWorker, ins: tuple) -> simpy.Event | Any:
        action, outbox = ins[1], ins[2]
        compiled, charge, release = self.math(sw, action)
        rt = self.rt
        if charge:
            rt.charge(sw, ACTIVATIONS, charge)
        if action.kind == F:
            sw.inflight += 1
            if sw.inflight > sw.peak_inflight:
                sw.peak_inflight = sw.inflight
        if compiled.simple:
            rt.count_flops(sw, compiled)
            seconds = compiled.seconds
            rt.record_compute(sw, action, compiled.items[0][2], seconds)
            sw.compute_s += seconds
            rt.note_action(action, seconds)
            done = self.rt.env.timeout(seconds)
            if outbox >= 0:
                rt.mailbox.publish(outbox + sw.message_base, done)
            if release is not None:
                done.callbacks.append(lambda _: self.finish(sw, action, release))
            return done
        return self._replay(sw, action, compiled, release)

    def _replay(self, sw: SimWorker, action: Action, compiled: CompiledTape, release: Any) -> Any:
        start = self.rt.env.now
        yield from self.rt.replay(sw, compiled, action)
        self.rt.note_action(action, self.rt.env.now - start)
        if release is not None:
            self.finish(sw, action, release)

    def finish(self, sw: SimWorker, action: Action, release: tuple[Any, Any]) -> None:
        """After a backward: free the forward's stash; after B, charge what W needs."""
        freed, kept = release
        self.rt.charge(sw, ACTIVATIONS, [-b for b in freed])
        if kept:
            self.rt.charge(sw, ACTIVATIONS, kept)
        if action.kind == BW or action.kind == W:
            sw.inflight -= 1

    # -- the math -----------------------------------------------------------------------
    def _each(
        self, sw: SimWorker, key: tuple, mb: int, work: Any
    ) -> tuple[list[Any], CompiledTape]:
        """``work(i, member)`` for every member, under its micro-batch's context; the
        first member's on a tape. Shape-only: once per ``key``, then from the cache."""
        rt = self.rt
        if rt.shape_only:
            hit = rt.tapes.get(key)
            if hit is None:
                with batch(rt.batch_info(sw.lead, mb)):
                    hit = rt.tapes[key] = rt.recorded(lambda: work(0, sw.lead))
            return [hit[0]], hit[1]
        results, compiled = [], None
        for i, member in enumerate(sw.members):
            with batch(rt.batch_info(member, mb)):
                if i == 0:
                    result, compiled = rt.recorded(lambda m=member: work(0, m))
                else:
                    result = work(i, member)
            results.append(result)
        assert compiled is not None
        return results, compiled

    def math(
        self, sw: SimWorker, action: Action
    ) -> tuple[CompiledTape, list[int] | None, tuple[list[int], list[int] | None] | None]:
        """Run the action's numbers for every member; returns the priced tape, the
        activation bytes to charge now (per rank) and what to release (and keep)
        when it ends."""
        stage, kind, mb = action
        rt = self.rt
        base = sw.message_base
        buffers, stash = sw.buffers, sw.stash
        t = len(sw.devices)
        chunk = sw.lead.chunks[stage]
        last = chunk.loss is not None
        if kind == F:
            source = (
                None if stage == 0 else buffers.pop(rt.message(ACTIVATION, stage - 1, mb) + base)
            )

            def forward(i: int, member: Any) -> Any:
                mine = member.chunks[stage]
                if source is None or last:
                    x, y = rt.micro_batch(member, mb)
                xs = [x] * t if source is None else source[i]
                return mine.forward(xs, [y] * t if last else None)

            results, compiled = self._each(sw, (stage, kind), mb, forward)
            ctxs = [ctx for _, ctx in results]
            charge = self._bytes((stage, kind), lambda r: chunk.stash_bytes(ctxs[0], r), t)
            stash[(stage, mb)] = (ctxs, charge)
            if not last:
                buffers[rt.message(ACTIVATION, stage, mb) + base] = [out for out, _ in results]
            elif not rt.shape_only:
                for out, _ in results:
                    rt.record_loss(float(out[0]))
            return compiled, charge, None
        if kind == W:
            wctxs, held = stash.pop((stage, mb, W))
            _, compiled = self._each(
                sw, (stage, kind), mb, lambda i, m: m.chunks[stage].backward_weight(wctxs[i])
            )
            return compiled, None, (held, None)
        # a backward: B (input gradient only) or BW (both)
        ctxs, held = stash.pop((stage, mb))
        grads = None if last else buffers.pop(rt.message(GRADIENT, stage + 1, mb) + base)

        def backward(i: int, member: Any) -> Any:
            mine, dys = member.chunks[stage], None if grads is None else grads[i]
            if kind == BW:
                return mine.backward(dys, ctxs[i], self.scale)
            return mine.backward_input(dys, ctxs[i], self.scale)

        results, compiled = self._each(sw, (stage, kind), mb, backward)
        kept = None
        if kind == BW:
            dxs = results
        else:
            dxs = [dx for dx, _ in results]
            wctxs = [w for _, w in results]
            kept = self._bytes((stage, kind), lambda r: chunk.wstash_bytes(wctxs[0], r), t)
            stash[(stage, mb, W)] = (wctxs, kept)
        if stage > 0:
            buffers[rt.message(GRADIENT, stage, mb) + base] = dxs
        return compiled, None, (held, kept)

    def _bytes(self, key: tuple[int, str], bytes_of: Any, t: int) -> list[int]:
        """``bytes_of(rank)`` for every rank (shape-only: computed once per key)."""
        cached = self._stash_bytes.get(key) if self.rt.shape_only else None
        if cached is None:
            cached = [bytes_of(r) for r in range(t)]
            if self.rt.shape_only:
                self._stash_bytes[key] = cached
        return cached
