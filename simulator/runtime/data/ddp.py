"""Data parallelism at run time: keeping replicas in agreement, and the optimizer step.

Every data-parallel replica computes the gradient of its share of the batch,
``g_i``; the replicas then combine them so that all apply the same update.
With ``grad_reduction = "mean"`` they average, ``g = (1/d) sum_i g_i``: the
gradient of the mean loss over the global batch, which is what single-device
training computes. With ``"sum"`` they add, as the seed's formula
``g = sum_i g_i`` reads; that is ``d`` times the global-batch gradient, so the
same learning rate takes a step ``d`` times longer.

How the gradients travel (PyTorch DDP, Li et al. 2020, VLDB, sec. 3.2; ZeRO,
Rajbhandari et al. 2020, sec. 5 and 7):

* ``zero = 0`` (DDP): all-reduce. ``bucket_mb = 0`` runs one all-reduce after
  the backward pass; ``bucket_mb > 0`` groups the gradients into buckets in
  reverse block order (:mod:`simulator.parallel.data.buckets`) and launches
  each bucket's all-reduce as soon as its gradients are final, overlapping the
  rest of the backward pass.
* ``zero = 1``: optimizer state partitioned. Gradients are reduce-scattered,
  each replica updates the part it owns, and the updated parameters are
  all-gathered: ``Psi`` + ``Psi`` elements instead of DDP's ``2 Psi``. The
  reduce-scatters run in buckets (one block each without ``bucket_mb``)
  during the last micro-batch's backward, as Megatron-LM's distributed
  optimizer does with ``overlap_grad_reduce``.
* ``zero = 2``: gradients partitioned too. Every micro-batch's gradients are
  reduce-scattered as soon as they are ready (one block at a time, or buckets
  of ``bucket_mb``) and accumulated into the owned part only.
* ``zero = 3``: parameters partitioned too. Each block's parameters are
  all-gathered right before its forward and its backward and dropped after:
  ``3 Psi`` per step. (The values every gather produces are the same within a
  step, so the numbers are assembled once per step, by the same all-gather
  algorithm, when the owners have updated their parts; the timeline and the
  ledger show the per-block gathers, :mod:`.zero`.)

``overlap_grad_reduce`` (default on, as PyTorch DDP and Megatron's
distributed optimizer overlap) lets a launched bucket run while backward
goes on. Off, DDP and ZeRO-1 reduce after backward (ZeRO-1 in one
reduce-scatter), and ZeRO-2/3, whose gradients must be reduced every
micro-batch to stay partitioned, make the compute stream wait for each
bucket as it is launched: every gradient collective is exposed.

The collectives run over the data-parallel group of every tensor-parallel
rank: the devices that hold the same shard in every replica
(:meth:`~simulator.runtime.meetings.Meetings.per_rank`). Under context
parallelism every context-parallel rank holds a replica of the weights too,
and the group is ``dp x cp`` devices, as Megatron-Core reduces over its
data-parallel group with context parallelism: a replica's gradient is then
its ranks' mean, each rank's being that of its tokens' mean loss (so
``"sum"`` adds the ``dp`` replicas' means, ``"mean"`` averages all ``dp x cp``),
and ZeRO partitions over all ``dp x cp``. Under expert parallelism the
experts' weights travel in buckets of their own, over the smaller group of
the replicas that hold the same experts (the expert-data-parallel group of
``dp / ep`` ranks, Megatron-Core's ``expert_data_parallel_group``; experts
and context parallelism are not built together); both are averaged over all
``dp`` replicas, since every expert saw tokens of all of them. The experts'
buckets launch during backward as the others do, so ``overlap_grad_reduce``
hides their reduction too. What a strategy may
ask of DDP and ZeRO is checked before anything runs
(:func:`simulator.parallel.data.ddp.check`).

The runtime drives this variant through a small contract,
:class:`~simulator.runtime.data.sync.DataParallelSync`: it charges the model
state, hears the tape's marks while backward runs, and handles the ``SYNC`` and
``STEP`` instructions. A simulated worker may stand for several identical
replicas (:mod:`simulator.runtime.fold`); it then hands in all of their
payloads at once, and applies every member's results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ...engine import Engine, Process
from ...engine.memory import BUFFERS, GRADIENTS, OPTIMIZER, PARAMETERS
from ...nn.optim import make_optimizer
from ...nn.param import Param
from ...ops.arrays import concat, is_shape_only, split_bounds
from ...ops.tape import Mark, on_rank
from ...parallel.build import Plan
from ...parallel.data.buckets import Bucket, make_buckets
from ...parallel.program import Op
from ...parallel.worker import Worker
from ..feed import Feed
from ..meetings import Handle, Meetings
from ..replay import Replay
from ..tally import Tally
from ..workers import SimWorker
from .tied import sync_tied
from .zero import ForwardOrder, ParameterGathers


class DataParallel(ParameterGathers):
    """Model state, gradient synchronisation and optimizer step for one run."""

    def __init__(
        self,
        plan: Plan,
        workers: Sequence[SimWorker],
        *,
        engine: Engine,
        meetings: Meetings,
        replay: Replay,
        feed: Feed,
        tally: Tally,
        numerics: bool,
    ) -> None:
        """Every variant is built from the same parts of a run: the ``plan`` it
        executes, the simulated ``workers``, the ``engine`` that holds their memory,
        the ``meetings`` where replicas meet, the ``replay`` that times its own work,
        and -- for a variant that computes the loss itself, as ``nn.DataParallel``
        does -- the ``feed`` of batches and the step's ``tally``."""
        self.plan = plan
        self.workers = workers
        self.engine = engine
        self.meetings = meetings
        self.replay = replay
        self.feed = feed
        self.tally = tally
        self.numerics = numerics
        s = self.strategy = plan.strategy
        self.dp_size, self.microbatches, self.zero = s.dp, s.microbatches, s.zero
        #: the weights' replicas: dp of them, each held by cp context-parallel ranks
        self.cp = s.cp
        self.replicas = s.dp * s.cp
        self.algorithm = s.allreduce_algorithm
        self.optimizer = make_optimizer(self.plan.training.optimizer, self.plan.training.lr)
        self.sharded = self.zero > 0 and self.replicas > 1
        # ZeRO-2 and 3 reduce every micro-batch; bucketed DDP launches during backward
        self.every_microbatch = self.zero >= 2
        # buckets launched during backward: DDP's and ZeRO-1's only when overlapping
        # (without bucket_mb, DDP has one all-reduce and ZeRO-1 one bucket per block,
        # as Megatron's distributed optimizer buckets it); ZeRO-2/3 always, since
        # their gradients are reduced every micro-batch
        launches = s.bucket_mb > 0 or self.zero >= 1
        self.overlap = self.replicas > 1 and (
            self.every_microbatch or (launches and s.overlap_grad_reduce)
        )
        #: ZeRO-1 and 2: the updated parameters gathered beside the next step's forward
        #: (ZeRO-3 with it is refused: parallel.data.ddp.check)
        self.param_overlap = self.sharded and s.overlap_param_gather
        #: the runtime keeps the tape's marks only when a hook listens
        self.wants_marks = (
            self.overlap or self.param_overlap or (self.zero == 3 and self.replicas > 1)
        )
        tied = {id(p) for pair in self.plan.tied for _, a, b in pair.params for p in (a, b)}
        per_block = self.zero == 3 or (
            s.bucket_mb == 0 and (self.every_microbatch or (self.zero == 1 and self.overlap))
        )
        # every replica of a pipeline rank has the same blocks: one bucket list per rank
        self.buckets = [
            make_buckets(self.plan.worker(0, r), s.bucket_mb, per_block, tied, s.ep > 1)
            for r in range(s.pp)
        ]
        #: per chunk, the micro-batches whose gradients it adds up (DualPipe's chunks
        #: see only their direction's half): when its gradients are final
        self._final = [
            len(plan.schedule.microbatches_of(c)) for c in range(plan.schedule.num_stages)
        ]
        self._shards: dict[tuple[int, int, int], Param] = {}
        self._ready: dict[int, Counter] = {}
        self._rounds: dict[int, Counter] = {}
        self._handles: dict[int, list[tuple[Bucket, Handle]]] = {}
        self._gathered: dict[int, list[int]] = {}
        self._prefetched: dict[int, tuple[tuple[int, int], Handle, list[int]]] = {}
        self._phase: dict[int, str] = {}
        self._gathers: Counter = Counter()  # tells successive gathers of a block apart
        self._parts = {}  # what a block's gather sends, per worker (ParameterGathers)
        self._shapes = {}  # a bucket's shape-only parts, per worker (ParameterGathers)
        #: overlap_param_gather: per worker, this step's buckets' gathers so far
        self._ahead: dict[int, tuple[dict[int, Handle], set[int]]] = {}
        self._forward_buckets: dict[int, ForwardOrder] = {}
        #: shape-only: a bucket's flattened gradients, per worker, one array per rank
        self._flat_shapes: dict[tuple[int, int], list[Any]] = {}

    def handlers(self) -> dict[Op, Callable[[SimWorker, tuple], Any]]:
        """The instructions this variant runs."""
        return {Op.SYNC: self.sync, Op.STEP: self.optimizer_step}

    def _members(self, sw: SimWorker) -> list[Worker]:
        """The members whose numbers exist (shape-only: the first stands for all)."""
        return sw.members if self.numerics else sw.members[:1]

    def _payloads(self, sw: SimWorker, make: Callable[[Worker], Any]) -> dict[int, Any]:
        """Every member's payload by worker index (shape-only: the first one's for all)."""
        if self.numerics:
            return {m.index: make(m) for m in sw.members}
        one = make(sw.lead)
        return {m.index: one for m in sw.members}

    def _group(self, w: Worker, bucket: Bucket) -> list[Worker]:
        """The replicas ``w`` reduces ``bucket`` with: all of them, or for experts'
        weights the ones that hold the same experts."""
        return self.plan.edp_group(w) if bucket.expert else self.plan.dp_group(w.pp_rank)

    def _place(self, w: Worker, rank: int, bucket: Bucket) -> tuple[int, int]:
        """Which part of ``bucket``'s ZeRO partition rank ``rank`` of ``w`` owns, and
        of how many parts: over :meth:`_group`, each context-parallel rank a part."""
        if bucket.expert:
            mesh = self.plan.mesh
            return mesh.expert_coords(w.dp_rank)[1], mesh.data_ranks // mesh.ep
        return self.owner(w, rank), self.replicas

    def together(self, blocks: int) -> list[list[int]] | None:
        """Which of a member's payloads one collective joins, for ``blocks`` runs of one
        payload per rank (:meth:`~simulator.runtime.meetings.Meetings.per_rank`): a
        tensor-parallel rank's context-parallel ranks hold replicas of one shard
        (None without context parallelism: one collective per rank)."""
        if self.cp == 1:
            return None
        ranks = len(self.plan.workers[0].devices)
        tp = ranks // self.cp
        return [
            [b * ranks + c * tp + r for c in range(self.cp)]
            for b in range(blocks)
            for r in range(tp)
        ]

    def owner(self, w: Worker, rank: int) -> int:
        """Which of the ``dp x cp`` parts of a ZeRO partition rank ``rank`` of ``w``
        owns: the reduce-scatters and all-gathers order a member's context-parallel
        ranks after the members before it."""
        return w.dp_rank * self.cp + rank * self.cp // len(w.devices)

    # -- model state -------------------------------------------------------------------------
    def _shard(self, w: Worker, rank: int, bucket: Bucket) -> Param:
        """The part of a bucket this replica owns under ZeRO (its optimizer state lives here)."""
        key = (w.index, rank, bucket.index)
        if key not in self._shards:
            flat = concat([p.value.reshape(-1) for p in bucket.params(w, rank)])
            place, size = self._place(w, rank, bucket)
            lo, hi = split_bounds(flat.size, size)[place]
            value = flat[lo:hi] if is_shape_only(flat) else flat[lo:hi].copy()
            self._shards[key] = Param(f"bucket{bucket.index}.shard", value)
        return self._shards[key]

    def allocate_model_state(self) -> None:
        """Charge parameters, gradients and optimizer state to every device (ZeRO's
        partitioning, Rajbhandari et al. 2020, sec. 5.1-5.3)."""
        for sw in self.workers:
            w = sw.lead
            buckets = self.buckets[w.pp_rank]
            amounts: dict[int, list[int]] = {c: [] for c in (PARAMETERS, GRADIENTS, OPTIMIZER)}
            largest = []
            for r in range(len(w.devices)):
                params = w.params(r)
                owned = [self._shard(w, r, b) for b in buckets] if self.sharded else params
                # gradients may be wider than their parameters (training.grad_precision)
                full, grads = _bytes(params)
                part, owned_grads = _bytes(owned)
                amounts[PARAMETERS].append(part if self.zero == 3 and self.sharded else full)
                amounts[GRADIENTS].append(owned_grads if self.zero >= 2 and self.sharded else grads)
                amounts[OPTIMIZER].append(sum(self.optimizer.state_bytes(p) for p in owned))
                if self.zero >= 2 and self.sharded and buckets:
                    # the staging buffer a bucket's full gradients pass through
                    largest.append(max(_bytes(b.params(w, r))[1] for b in buckets))
            for category, per_rank in amounts.items():
                sw.charge(self.engine, category, per_rank)
            if largest:
                sw.charge(self.engine, BUFFERS, largest)

    # -- during the step ---------------------------------------------------------------------
    def start_step(self, sw: SimWorker) -> None:
        """With ``overlap_param_gather``, launch the first parameter all-gather of the
        last step's update (:mod:`.zero`)."""
        if self.param_overlap:
            self._first_gather(sw)

    def on_mark(self, sw: SimWorker, mark: Mark) -> Process | None:
        """Launch bucket collectives as gradients become final; gather ZeRO-3 parameters,
        and with ``overlap_param_gather`` ZeRO-1 and 2's before a block's first forward."""
        if self.replicas == 1:
            return None
        if mark.name == "grads_ready" and self.overlap:
            self._ready.setdefault(sw.index, Counter())[mark.value] += 1
            launched = self._launch_ready(sw)
            if launched and not self.strategy.overlap_grad_reduce:
                return self.meetings.wait(sw, launched, "a gradient bucket of its replicas")
        elif mark.name == "block" and self.zero == 3:
            self._release_gathered(sw)
            chunk, block, phase = mark.value
            self._phase[sw.index] = phase
            if phase != "W" and sw.lead.chunks[chunk].blocks[block].params(0):
                return self._gather_block(sw, chunk, block)
        elif mark.name == "block" and self.param_overlap and mark.value[2] == "F":
            return self._params_for(sw, mark.value[0], mark.value[1])
        return None

    def _launch_ready(self, sw: SimWorker) -> list[Handle]:
        """Launch every bucket whose gradients are final, in bucket order per round;
        returns their handles."""
        ready = self._ready[sw.index]
        rounds = self._rounds.setdefault(sw.index, Counter())
        # DDP and ZeRO-1 reduce once, after the last micro-batch; ZeRO-2/3 every one
        limit = self.microbatches if self.every_microbatch else 1
        handles: list[Handle] = []
        launched = True
        while launched:
            launched = False
            for bucket in self.buckets[sw.pp_rank]:
                i, done = bucket.index, rounds[bucket.index]
                if bucket.tail or done >= limit:
                    continue
                if i > 0 and rounds[i - 1] <= done:
                    break  # the previous bucket goes first
                final = self._final
                if not all(
                    ready[blk] >= (done + 1 if self.every_microbatch else final[blk[0]])
                    for blk in bucket.blocks
                ):
                    break
                rounds[i] += 1
                handles.append(self._launch(sw, bucket, done))
                launched = True
        return handles

    def _launch(self, sw: SimWorker, bucket: Bucket, round_: int) -> Handle:
        def flat_grads(w: Worker) -> list[Any]:
            if not self.numerics:  # shape-only: the same arrays every time, in one list
                key = (w.index, bucket.index)
                payload = self._flat_shapes.get(key)
                if payload is None:
                    payload = self._flat_shapes[key] = [
                        concat([p.grad.reshape(-1) for p in bucket.params(w, r)])
                        for r in range(len(w.devices))
                    ]
                return payload  # (zeroing shape-only gradients changes nothing)
            payload = []
            for r in range(len(w.devices)):
                params = bucket.params(w, r)
                payload.append(concat([p.grad.reshape(-1) for p in params]))
                if self.every_microbatch:
                    for p in params:  # the full gradient is handed over and dropped
                        p.zero_grad()
            return payload

        op = "all_reduce" if self.zero == 0 else "reduce_scatter"
        group = self._group(sw.lead, bucket)

        def run(payloads: list[list[Any]]) -> tuple[list[list[Any]], float]:
            # shape-only: every round hands in the same lists (flat_grads) and no one
            # reads the results, so the collectives are worked out once, then timed
            return self.meetings.per_rank(
                op, self.algorithm, group, payloads, "dp", f"grad {op}",
                together=self.together(1), stable=not self.numerics,
            )  # fmt: skip

        key = ("grads", sw.pp_rank, bucket.index, round_, group[0].index)
        handle = self.meetings.launch(key, group, self._payloads(sw, flat_grads), run)
        self._handles.setdefault(sw.index, []).append((bucket, handle))
        return handle

    # -- end of the step ---------------------------------------------------------------------
    def sync(self, sw: SimWorker, _instruction: Any = None) -> Process:
        """Finish the gradient exchange, then sum the copies of tied weights."""
        if self.replicas > 1:
            yield from self._exchange(sw)
        if self.plan.tied:
            yield from sync_tied(
                self.meetings, sw, self.plan.tied, self.plan.workers, self._grad_of, self.numerics
            )
        if self.plan.copies:  # DualPipe's two copies of every stage: after the tied sums
            yield from sync_tied(
                self.meetings,
                sw,
                self.plan.copies,
                self.plan.workers,
                self._grad_of,
                self.numerics,
                ("copies", "copies", "stage copies' grads"),
            )

    def _grad_of(self, w: Worker, rank: int, param: Param) -> Any:
        if not self.sharded:
            return param.grad
        (bucket,) = [b for b in self.buckets[w.pp_rank] if b.tail and b.params(w, rank)[0] is param]
        return self._shard(w, rank, bucket).grad

    def _exchange(self, sw: SimWorker) -> Process:
        for bucket in self.buckets[sw.pp_rank]:
            if bucket.tail or not self.overlap:
                self._launch(sw, bucket, 0)
        launched = self._handles.pop(sw.index, [])
        self._ready.pop(sw.index, None)
        self._rounds.pop(sw.index, None)
        yield from self.meetings.wait(
            sw, [h for _, h in launched], "the gradient exchange of its replicas"
        )
        # a replica's gradient is its context-parallel ranks' mean (the module docstring)
        scale = 1.0 / (self.dp_size if self.strategy.grad_reduction == "mean" else 1) / self.cp
        for w in self._members(sw):
            for bucket, handle in launched:
                for r, flat in enumerate(handle.results[w.index]):
                    if is_shape_only(flat):
                        continue
                    if self.sharded:
                        self._shard(w, r, bucket).grad += flat * scale
                        continue
                    offset = 0
                    for p in bucket.params(w, r):
                        p.grad[...] = flat[offset : offset + p.size].reshape(p.shape) * scale
                        offset += p.size
        self._release_gathered(sw)
        self._drop_prefetched(sw)

    def optimizer_step(self, sw: SimWorker, _instruction: Any = None) -> Process:
        """Update what each member owns; under ZeRO, all-gather the updated parameters."""

        def step(w: Worker) -> None:
            for r in range(len(w.devices)):
                with on_rank(r):
                    params = w.params(r)
                    if self.sharded:
                        shards = [self._shard(w, r, b) for b in self.buckets[w.pp_rank]]
                        self.optimizer.step(shards)
                        for s in shards:
                            s.zero_grad()
                    else:
                        self.optimizer.step(params)
                    for p in params:
                        p.zero_grad()

        members = self._members(sw)
        _, compiled = self.replay.priced(("optimizer", sw.pp_rank), lambda: step(members[0]), sw)
        for w in members[1:]:
            step(w)
        yield from self.replay.run(sw, compiled, "optimizer", "opt")
        if self.sharded:
            yield from self._gather_params(sw, overlapped=self.param_overlap)


def _bytes(params: list[Param]) -> tuple[int, int]:
    """Bytes of the parameters' values and of their gradients."""
    return sum(p.nbytes for p in params), sum(int(p.grad.nbytes) for p in params)
