"""Parameter all-gathers: after a sharded optimizer step, and ZeRO-3's per block.

Under ZeRO (Rajbhandari et al. 2020, sec. 5) every replica updates only the
part of the parameters it owns; an all-gather then gives every replica the
whole updated parameters (:meth:`ParameterGathers._gather_params`). ZeRO-3
keeps only its part between uses and all-gathers each block's parameters
before the block runs (:meth:`ParameterGathers._gather_block`), holding them
until the next block. With ``prefetch_params`` (on by default, as PyTorch
FSDP's ``backward_prefetch`` and FSDP2's implicit prefetching are; Zhao et
al. 2023, sec. 3.3) the gather of the block that runs next is launched as
soon as the current block's parameters are in, so it overlaps the current
block's compute and only the first block of each pass waits in full; the
price is a second block's parameters held at once.

With ``overlap_param_gather`` (ZeRO-1 and 2) the updated parameters are not
gathered after the optimizer step but beside the next step's forward, as
Megatron-Core's distributed optimizer does with ``--overlap-param-gather``
(``megatron/core/optimizer/distrib_optimizer.py``, ``megatron/core/distributed``);
each block's first forward of the step waits for its bucket's gather
(:meth:`ParameterGathers._params_for`). When the gathers are launched:

* ``align_param_gather`` (the default, as Megatron-LM's ``--align-param-gather``
  is in the versions that have it): every bucket's, in forward order, as the
  step starts, on every pipeline stage at once; a stage's gathers run while it
  waits for its first activation;
* otherwise, as core_v0.8.0 does: the first bucket's as the step starts (its
  ``zero_grad``), and each next one when a layer has waited for the one
  before, so that it runs beside that bucket's layers. Only the first bucket
  is exposed when a bucket's layers compute longer than the next bucket takes
  to gather; otherwise the first forward waits for the gathers, on every
  pipeline stage in turn, and delays the pipeline's fill.

The simulator times them in every step, the first one too, so that a step is
the steady state a measured iteration is, and assembles the numbers at the
optimizer step, untimed, as ZeRO-3's are. The gathers of tied weights' tail
buckets and of experts' buckets stay after the step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ...engine import Engine, Process
from ...engine.memory import BUFFERS
from ...nn.param import Param
from ...ops.arrays import ShapeArray, dtype_of, is_shape_only, split_bounds
from ...parallel.build import Plan
from ...parallel.data.buckets import Bucket
from ...parallel.worker import Worker
from ..meetings import Handle, Meetings
from ..workers import SimWorker

#: ``overlap_param_gather``'s buckets in forward order, and by block their positions
ForwardOrder = tuple[list[Bucket], dict[tuple[int, int], list[int]]]


class ParameterGathers:
    """The all-gathers of :class:`~.ddp.DataParallel` under ZeRO (module docstring)."""

    plan: Plan
    engine: Engine
    meetings: Meetings
    algorithm: str
    zero: int
    replicas: int
    buckets: list[list[Bucket]]
    _gathered: dict[int, list[int]]
    #: worker -> the block whose gather was launched ahead, its handle and held bytes
    _prefetched: dict[int, tuple[tuple[int, int], Handle, list[int]]]
    #: worker -> the pass under way, "F" or "B" (which way the next block lies)
    _phase: dict[int, str]
    strategy: Any
    _gathers: Counter
    #: (worker, chunk, block) -> :meth:`_gather_parts`
    _parts: dict[tuple[int, int, int], tuple[list[list[ShapeArray]], list[int]]]
    #: (worker, bucket) -> :meth:`_shape_parts`
    _shapes: dict[tuple[int, int], list[list[ShapeArray]]]
    #: overlap_param_gather: worker -> this step's (bucket position -> handle, positions
    #: waited for)
    _ahead: dict[int, tuple[dict[int, Handle], set[int]]]
    #: pipeline rank -> :meth:`_forward_order`
    _forward_buckets: dict[int, ForwardOrder]
    _shard: Callable[[Worker, int, Bucket], Param]
    _group: Callable[[Worker, Bucket], list[Worker]]
    _payloads: Callable[[SimWorker, Callable[[Worker], Any]], dict[int, Any]]
    _members: Callable[[SimWorker], list[Worker]]
    together: Callable[[int], list[list[int]] | None]
    owner: Callable[[Worker, int], int]

    def _gather_params(self, sw: SimWorker, overlapped: bool = False) -> Process:
        """All-gather the updated parts of every bucket and write the parameters back:
        one gather over the replicas, and one over the replicas holding the same
        experts for the experts' buckets (expert parallelism). ``overlapped``: the
        buckets the next step's forward gathers (:meth:`_params_for`) are gathered
        here untimed, for their numbers."""
        later = self._forward_order(sw)[0] if overlapped else []
        for expert in (False, True):
            buckets = [b for b in self.buckets[sw.pp_rank] if b.expert == expert]
            now = [b for b in buckets if b not in later]
            if now:
                yield from self._gather_buckets(sw, now)
            if not expert and len(now) < len(buckets):
                yield from self._gather_buckets(sw, later, timed=False)

    def _gather_buckets(self, sw: SimWorker, buckets: list[Bucket], timed: bool = True) -> Process:
        group = self._group(sw.lead, buckets[0])
        t = len(sw.devices)
        ranks = [r for _ in buckets for r in range(t)]

        def parts(w: Worker) -> list[Any]:
            return [self._shard(w, r, b).value for b in buckets for r in range(t)]

        def run(payloads: list[list[Any]]) -> tuple[list[list[Any]], float]:
            # ZeRO-3 pays for its gathers block by block, before each use
            return self.meetings.per_rank(
                "all_gather",
                self.algorithm,
                group,
                payloads,
                "dp",
                "param all-gather",
                timed=timed and self.zero < 3,
                ranks=ranks,
                together=self.together(len(buckets)),
            )

        handle = yield from self.meetings.meet(
            sw,
            ("params", sw.pp_rank, buckets[0].expert, timed, group[0].index),
            group,
            self._payloads(sw, parts),
            run,
            "the parameter all-gather of its replicas",
        )
        for w in self._members(sw):
            flat_of = iter(handle.results[w.index])
            for bucket in buckets:
                for r in range(t):
                    flat = next(flat_of)
                    if is_shape_only(flat):
                        continue
                    offset = 0
                    for p in bucket.params(w, r):
                        p.value[...] = flat[offset : offset + p.size].reshape(p.shape)
                        offset += p.size

    def _forward_order(self, sw: SimWorker) -> ForwardOrder:
        """The buckets whose gathers ``overlap_param_gather`` moves to the forward, in
        the order the forward first uses them (neither tail nor expert buckets: module
        docstring), and by block the positions of the buckets it waits for."""
        hit = self._forward_buckets.get(sw.pp_rank)
        if hit is None:
            moved = [b for b in self.buckets[sw.pp_rank] if not b.tail and not b.expert]
            order = sorted(moved, key=lambda b: min(b.blocks))
            by_block: dict[tuple[int, int], list[int]] = {}
            for i, bucket in enumerate(order):
                for key in sorted(bucket.blocks):
                    by_block.setdefault(key, []).append(i)
            hit = self._forward_buckets[sw.pp_rank] = (order, by_block)
        return hit

    def _first_gather(self, sw: SimWorker) -> None:
        """``overlap_param_gather``: ``sw`` starts a step; launch its first bucket's
        all-gather (Megatron-Core's ``zero_grad``), or with ``align_param_gather``
        every bucket's, in forward order (module docstring)."""
        order = self._forward_order(sw)[0]
        first = order if self.strategy.align_param_gather else order[:1]
        launched = {i: self._launch_bucket_gather(sw, bucket) for i, bucket in enumerate(first)}
        self._ahead[sw.index] = (launched, set())

    def _params_for(self, sw: SimWorker, chunk: int, block: int) -> Process | None:
        """``overlap_param_gather``: block ``block`` of ``chunk`` is about to run its
        forward; the first time in the step, wait for its buckets' all-gathers. None
        when they are in."""
        order, by_block = self._forward_order(sw)
        launched, waited = self._ahead[sw.index]  # this step's (:meth:`_first_gather`)
        wanted = [i for i in by_block.get((chunk, block), ()) if i not in waited]
        return self._await_params(sw, order, launched, waited, wanted) if wanted else None

    def _await_params(
        self,
        sw: SimWorker,
        order: list[Bucket],
        launched: dict[int, Handle],
        waited: set[int],
        wanted: list[int],
    ) -> Process:
        """Wait for the ``wanted`` buckets' gathers (launching any not launched yet),
        then launch the next bucket's, as Megatron-Core's forward pre-hook does."""
        for i in wanted:
            if i not in launched:
                launched[i] = self._launch_bucket_gather(sw, order[i])
        yield from self.meetings.wait(
            sw, [launched[i] for i in wanted], "the parameter all-gather of its replicas"
        )
        waited.update(wanted)
        after = max(wanted) + 1
        if after < len(order) and after not in launched:
            launched[after] = self._launch_bucket_gather(sw, order[after])

    def _launch_bucket_gather(self, sw: SimWorker, bucket: Bucket) -> Handle:
        """Launch the timed all-gather of one bucket's updated parameters."""
        group = self._group(sw.lead, bucket)
        key = ("params ahead", sw.pp_rank, bucket.index, sw.step, group[0].index)
        return self._launch_shapes(sw, key, group, self._shape_parts(sw, bucket))

    def _gather_block(self, sw: SimWorker, chunk: int, block: int) -> Process:
        """Block ``block`` of ``chunk`` is about to run: wait for its parameters (gathered
        now, or prefetched while the block before ran); with ``prefetch_params`` launch
        the gather of the block that runs next, so it overlaps this block's compute."""
        ahead = self._prefetched.pop(sw.index, None)
        if ahead is not None and ahead[0] == (chunk, block):
            handle, held = ahead[1], ahead[2]
        else:
            if ahead is not None:  # not the block that runs next after all: drop it
                sw.charge(self.engine, BUFFERS, [-b for b in ahead[2]])
            handle, held = self._launch_gather(sw, chunk, block)
        self._gathered[sw.index] = held
        yield from self.meetings.wait(sw, [handle], "a ZeRO-3 parameter all-gather")
        after = self._next_block(sw, chunk, block) if self.strategy.prefetch_params else None
        if after is not None:
            self._prefetched[sw.index] = (after, *self._launch_gather(sw, *after))

    def _next_block(self, sw: SimWorker, chunk: int, block: int) -> tuple[int, int] | None:
        """The block with parameters that runs after ``block`` in the same pass: the next
        one in a forward pass, the one before in a backward pass."""
        blocks = sw.lead.chunks[chunk].blocks
        phase = self._phase.get(sw.index, "F")
        order = range(block + 1, len(blocks)) if phase == "F" else range(block - 1, -1, -1)
        return next(((chunk, b) for b in order if blocks[b].params(0)), None)

    def _launch_gather(self, sw: SimWorker, chunk: int, block: int) -> tuple[Handle, list[int]]:
        """Launch the all-gather of one block's parameters and hold its bytes."""
        group = self.plan.dp_group(sw.pp_rank)
        payloads, held = self._gather_parts(sw, chunk, block)
        sw.charge(self.engine, BUFFERS, held)
        self._gathers[(sw.index, chunk, block)] += 1
        key = ("gather", sw.pp_rank, chunk, block, self._gathers[(sw.index, chunk, block)])
        return self._launch_shapes(sw, key, group, payloads), held

    def _launch_shapes(
        self, sw: SimWorker, key: tuple, group: list[Worker], payloads: list[list[ShapeArray]]
    ) -> Handle:
        """Launch the timed all-gather ``key`` of ``sw``'s members' parts over ``group``:
        their shapes (:meth:`_shape_parts`), every member's the same; the values were
        gathered already."""

        def run(_: list[Any]) -> tuple[list[Any], float]:
            _, end = self.meetings.per_rank(
                "all_gather", self.algorithm, group, payloads, "dp", "param all-gather",
                together=self.together(1), stable=True,
            )  # fmt: skip
            return [None] * len(group), end

        return self.meetings.launch(key, group, dict.fromkeys(m.index for m in sw.members), run)

    def _shape_parts(self, sw: SimWorker, bucket: Bucket) -> list[list[ShapeArray]]:
        """Every replica's part of ``bucket``'s parameters (over :meth:`_group`), per
        tensor-parallel rank, as shapes; worked out once per worker and bucket."""
        key = (sw.index, bucket.index)
        hit = self._shapes.get(key)
        if hit is None:
            w = sw.lead
            t = len(w.devices)
            pieces = []
            for r in range(t):
                params = bucket.params(w, r)
                bounds = split_bounds(sum(p.size for p in params), self.replicas)
                dtype = dtype_of(params[0].value)
                pieces.append([ShapeArray((hi - lo,), dtype) for lo, hi in bounds])
            group = self._group(w, bucket)
            hit = self._shapes[key] = [
                [pieces[r][self.owner(m, r)] for r in range(t)] for m in group
            ]
        return hit

    def _gather_parts(
        self, sw: SimWorker, chunk: int, block: int
    ) -> tuple[list[list[ShapeArray]], list[int]]:
        """For :meth:`_launch_gather`: every member's part of one block's parameters, per
        tensor-parallel rank (their shapes: the values were gathered already), and the
        bytes each rank holds once they are in; worked out once per worker and block (a
        ZeRO-3 step gathers every block twice per micro-batch, over hundreds of replicas)."""
        key = (sw.index, chunk, block)
        hit = self._parts.get(key)
        if hit is None:
            w = sw.lead
            (bucket,) = [b for b in self.buckets[sw.pp_rank] if b.blocks == {(chunk, block)}]
            held = [
                sum(p.nbytes for p in bucket.params(w, r)) - self._shard(w, r, bucket).nbytes
                for r in range(len(w.devices))
            ]
            hit = self._parts[key] = (self._shape_parts(sw, bucket), held)
        return hit

    def _release_gathered(self, sw: SimWorker) -> None:
        held = self._gathered.pop(sw.index, None)
        if held is not None:
            sw.charge(self.engine, BUFFERS, [-b for b in held])

    def _drop_prefetched(self, sw: SimWorker) -> None:
        ahead = self._prefetched.pop(sw.index, None)
        if ahead is not None:
            sw.charge(self.engine, BUFFERS, [-b for b in ahead[2]])
