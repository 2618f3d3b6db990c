"""Data parallelism: keeping replicas in agreement, and the optimizer step.

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
  reverse block order and launches each bucket's all-reduce as soon as its
  gradients are final, overlapping the rest of the backward pass.
* ``zero = 1``: optimizer state partitioned. Gradients are reduce-scattered,
  each replica updates the part it owns, and the updated parameters are
  all-gathered: ``Psi`` + ``Psi`` elements instead of DDP's ``2 Psi``.
* ``zero = 2``: gradients partitioned too. Every micro-batch's gradients are
  reduce-scattered as soon as they are ready (one block at a time, or buckets
  of ``bucket_mb``) and accumulated into the owned part only.
* ``zero = 3``: parameters partitioned too. Each block's parameters are
  all-gathered right before its forward and its backward and dropped after:
  ``3 Psi`` per step. (The values every gather produces are the same within a
  step, so the numbers are assembled once per step, by the same all-gather
  algorithm, when the owners have updated their parts; the timeline and the
  ledger show the per-block gathers.)

The collectives run over the data-parallel group of every tensor-parallel
rank: the devices that hold the same shard in every replica.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .. import comm
from ..arrays import ShapeArray, concat, dtype_of, is_shape_only, split_bounds
from ..nn.optim import make_optimizer
from ..nn.param import Param
from ..tape import Mark, on_rank
from .plan import Worker

Process = Generator[Any, Any, Any]
MiB = 2**20  # PyTorch's bucket_cap_mb counts 2**20 bytes


@dataclass(frozen=True)
class Bucket:
    """Blocks whose gradients travel together, in the order they become ready."""

    index: int
    blocks: tuple[tuple[int, int], ...]  # (chunk, block)

    def params(self, w: Worker, rank: int) -> list[Param]:
        return [p for c, b in self.blocks for p in w.chunks[c].blocks[b].params(rank)]


class DataParallel:
    """Model state, gradient synchronisation and optimizer step for one run."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.plan = runtime.plan
        s = self.strategy = runtime.plan.strategy
        self.d, self.m, self.zero = s.dp, s.microbatches, s.zero
        self.optimizer = make_optimizer(self.plan.training.optimizer, self.plan.training.lr)
        # ZeRO-2 and 3 reduce every micro-batch; bucketed DDP launches during backward
        self.every_microbatch = self.zero >= 2
        self.overlap = self.d > 1 and (s.bucket_mb > 0 or self.every_microbatch)
        self.buckets = {w.index: self._buckets(w) for w in self.plan.workers}
        self._shards: dict[tuple[int, int, int], Param] = {}
        self._ready: dict[int, Counter] = {}
        self._rounds: dict[int, Counter] = {}
        self._handles: dict[int, list[tuple[Bucket, Any]]] = {}
        self._gathered: dict[int, tuple[int, int] | None] = {}
        self._gathers: Counter = Counter()  # tells successive gathers of a block apart

    # -- layout --------------------------------------------------------------------------
    def _buckets(self, w: Worker) -> list[Bucket]:
        order = [
            (c, b)
            for c in sorted(w.chunks, reverse=True)
            for b in reversed(range(len(w.chunks[c].blocks)))
            if w.chunks[c].blocks[b].params(0)
        ]
        if self.zero == 3 or (self.every_microbatch and self.strategy.bucket_mb == 0):
            return [Bucket(i, (blk,)) for i, blk in enumerate(order)]
        if self.strategy.bucket_mb == 0:
            return [Bucket(0, tuple(order))] if order else []
        cap = self.strategy.bucket_mb * MiB
        buckets: list[Bucket] = []
        current: list[tuple[int, int]] = []
        size = 0
        for c, b in order:
            current.append((c, b))
            size += sum(p.nbytes for p in w.chunks[c].blocks[b].params(0))
            if size >= cap:
                buckets.append(Bucket(len(buckets), tuple(current)))
                current, size = [], 0
        if current:
            buckets.append(Bucket(len(buckets), tuple(current)))
        return buckets

    def _owned(self, w: Worker, rank: int, bucket: Bucket) -> tuple[int, int]:
        """The slice of the bucket's flat vector this replica owns under ZeRO."""
        size = sum(p.size for p in bucket.params(w, rank))
        return split_bounds(size, self.d)[w.dp_rank]

    def _shard(self, w: Worker, rank: int, bucket: Bucket) -> Param:
        """The owned part of a bucket's parameters (its optimizer state lives here)."""
        key = (w.index, rank, bucket.index)
        if key not in self._shards:
            lo, hi = self._owned(w, rank, bucket)
            flat = concat([p.value.reshape(-1) for p in bucket.params(w, rank)])
            value = flat[lo:hi] if is_shape_only(flat) else flat[lo:hi].copy()
            self._shards[key] = Param(f"bucket{bucket.index}.shard", value)
        return self._shards[key]

    def allocate_model_state(self) -> None:
        """Charge parameters, gradients and optimizer state to every device."""
        for w in self.plan.workers:
            for r, d in enumerate(w.devices):
                ledger = self.rt.engine.memory[d]
                params = w.params(r)
                full = sum(p.nbytes for p in params)
                if self.zero == 0 or self.d == 1:
                    shard_bytes, state = full, sum(self.optimizer.state_bytes(p) for p in params)
                else:
                    shards = [self._shard(w, r, b) for b in self.buckets[w.index]]
                    shard_bytes = sum(s.nbytes for s in shards)
                    state = sum(self.optimizer.state_bytes(s) for s in shards)
                # parameters and gradients not in any bucket (no data parallelism)
                ledger.allocate(
                    "parameters", shard_bytes if self.zero == 3 and self.d > 1 else full
                )
                ledger.allocate("gradients", shard_bytes if self.zero >= 2 and self.d > 1 else full)
                ledger.allocate("optimizer", state)
                if self.zero >= 2 and self.d > 1 and self.buckets[w.index]:
                    # the staging buffer a bucket's full gradients pass through
                    largest = max(
                        sum(p.nbytes for p in b.params(w, r)) for b in self.buckets[w.index]
                    )
                    ledger.allocate("buffers/gradient bucket", largest)

    # -- during backward -------------------------------------------------------------------
    def on_mark(self, w: Worker, mark: Mark) -> Process | None:
        """Launch bucket collectives as gradients become final; gather ZeRO-3 parameters."""
        if self.d == 1:
            return None
        if mark.name == "grads_ready" and self.overlap:
            self._ready.setdefault(w.index, Counter())[mark.value] += 1
            self._launch_ready(w)
        elif mark.name == "block" and self.zero == 3:
            return self._gather_block(w, mark.value)
        return None

    def _launch_ready(self, w: Worker) -> None:
        """Launch every bucket whose gradients are final, in bucket order per round."""
        ready = self._ready[w.index]
        rounds = self._rounds.setdefault(w.index, Counter())
        # DDP and ZeRO-1 reduce once, after the last micro-batch; ZeRO-2/3 every one
        limit = self.m if self.every_microbatch else 1
        launched = True
        while launched:
            launched = False
            for i, bucket in enumerate(self.buckets[w.index]):
                done = rounds[i]
                if done >= limit:
                    continue
                if i > 0 and rounds[i - 1] <= done:
                    break  # the previous bucket goes first
                target = done + 1 if self.every_microbatch else self.m
                if not all(ready[blk] >= target for blk in bucket.blocks):
                    break
                rounds[i] += 1
                self._launch(w, bucket, done)
                launched = True

    def _launch(self, w: Worker, bucket: Bucket, round_: int) -> None:
        payload = []
        for r in range(len(w.devices)):
            params = bucket.params(w, r)
            payload.append(concat([p.grad.reshape(-1) for p in params]))
            if self.every_microbatch:
                for p in params:  # the full gradient is handed over and dropped
                    p.zero_grad()
        op = "all_reduce" if self.zero == 0 else "reduce_scatter"
        group = self.plan.dp_group(w.pp_rank)
        handle = self.rt.launch(
            w, ("grads", w.pp_rank, bucket.index, round_), group, payload, self._run(op, group)
        )
        self._handles.setdefault(w.index, []).append((bucket, handle))

    def _run(self, op: str, group: list[Worker]):
        """The collective body: numerics per tensor-parallel rank, timed on its devices."""

        def run(payloads: list[list[Any]]) -> tuple[list[list[Any]], float]:
            results: list[list[Any]] = [[] for _ in payloads]
            end = self.rt.env.now
            for r in range(len(payloads[0])):
                devices = tuple(m.devices[r] for m in group)
                nodes = [self.plan.cluster.node_of(dev) for dev in devices]
                outs, plan = comm.collective(
                    op, [p[r] for p in payloads], self.strategy.allreduce_algorithm, nodes=nodes
                )
                end = max(end, self.rt.engine.collective(plan, devices, "dp", f"grad {op}"))
                for i, out in enumerate(outs):
                    results[i].append(out)
            return results, end

        return run

    # -- synchronisation -------------------------------------------------------------------
    def sync(self, w: Worker, _instruction: Any = None) -> Process:
        """Finish the gradient exchange of the step (see the module docstring)."""
        if self.d == 1:
            return
        if not self.overlap:
            for bucket in self.buckets[w.index]:
                self._launch(w, bucket, 0)
        handles = self._handles.pop(w.index, [])
        self._ready.pop(w.index, None)
        self._rounds.pop(w.index, None)
        results = yield from self.rt.wait(
            w, [h for _, h in handles], "the gradient exchange of its replicas"
        )
        scale = 1.0 / self.d if self.strategy.grad_reduction == "mean" else 1.0
        for (bucket, _), per_rank in zip(handles, results, strict=True):
            for r, flat in enumerate(per_rank):
                if is_shape_only(flat):
                    continue
                if self.zero == 0:
                    offset = 0
                    for p in bucket.params(w, r):
                        p.grad[...] = flat[offset : offset + p.size].reshape(p.shape) * scale
                        offset += p.size
                else:
                    self._shard(w, r, bucket).grad += flat * scale
        self._release_gathered(w)

    def optimizer_step(self, w: Worker, _instruction: Any = None) -> Process:
        """Update what this replica owns; under ZeRO, all-gather the updated parameters."""
        sharded = self.zero > 0 and self.d > 1

        def step() -> None:
            for r in range(len(w.devices)):
                with on_rank(r):
                    params = w.params(r)
                    if sharded:
                        shards = [self._shard(w, r, b) for b in self.buckets[w.index]]
                        self.optimizer.step(shards)
                        for s in shards:
                            s.zero_grad()
                    else:
                        self.optimizer.step(params)
                    for p in params:
                        p.zero_grad()

        _, tape = self.rt.run_recorded(("optimizer", w.pp_rank), step)
        yield from self.rt.replay(w, tape, "optimizer", "opt")
        if sharded:
            yield from self._gather_params(w)

    def _gather_params(self, w: Worker) -> Process:
        """All-gather the updated parts and write the full parameters back."""
        buckets = self.buckets[w.index]
        payload = [[self._shard(w, r, b).value for b in buckets] for r in range(len(w.devices))]
        group = self.plan.dp_group(w.pp_rank)
        timed = self.zero < 3  # ZeRO-3 pays for its gathers block by block instead

        def run(payloads: list[list[list[Any]]]) -> tuple[list[Any], float]:
            results: list[list[list[Any]]] = [[[] for _ in buckets] for _ in payloads]
            end = self.rt.env.now
            for r in range(len(w.devices)):
                devices = tuple(m.devices[r] for m in group)
                nodes = [self.plan.cluster.node_of(dev) for dev in devices]
                for i in range(len(buckets)):
                    outs, plan = comm.collective(
                        "all_gather",
                        [p[r][i] for p in payloads],
                        self.strategy.allreduce_algorithm,
                        nodes=nodes,
                    )
                    if timed:
                        end = max(
                            end, self.rt.engine.collective(plan, devices, "dp", "param all-gather")
                        )
                    for k, out in enumerate(outs):
                        results[k][i].append(out)
            return results, end

        gathered = yield from self.rt.meet(
            w,
            ("params", w.pp_rank),
            group,
            payload,
            run,
            "the parameter all-gather of its replicas",
        )
        for i, bucket in enumerate(buckets):
            for r, flat in enumerate(gathered[i]):
                if is_shape_only(flat):
                    continue
                offset = 0
                for p in bucket.params(w, r):
                    p.value[...] = flat[offset : offset + p.size].reshape(p.shape)
                    offset += p.size

    # -- ZeRO-3 ---------------------------------------------------------------------------
    def _gather_block(self, w: Worker, where: tuple[int, int, str]) -> Process | None:
        chunk, block, phase = where
        self._release_gathered(w)
        if phase == "W" or not w.chunks[chunk].blocks[block].params(0):
            return None
        return self._timed_gather(w, chunk, block)

    def _timed_gather(self, w: Worker, chunk: int, block: int) -> Process:
        group = self.plan.dp_group(w.pp_rank)
        (bucket,) = [b for b in self.buckets[w.index] if b.blocks == ((chunk, block),)]
        shapes = []
        for r, dev in enumerate(w.devices):
            params = bucket.params(w, r)
            size = sum(p.size for p in params)
            dtype = dtype_of(params[0].value)
            shapes.append([ShapeArray((hi - lo,), dtype) for lo, hi in split_bounds(size, self.d)])
            full = sum(p.nbytes for p in params)
            self.rt.engine.memory[dev].allocate(
                "buffers/gathered parameters", full - self._shard(w, r, bucket).nbytes
            )
        self._gathered[w.index] = (chunk, block)

        def run(payloads: list[Any]) -> tuple[list[Any], float]:
            end = self.rt.env.now
            for r in range(len(w.devices)):
                devices = tuple(m.devices[r] for m in group)
                nodes = [self.plan.cluster.node_of(dev) for dev in devices]
                _, plan = comm.collective(
                    "all_gather", shapes[r], self.strategy.allreduce_algorithm, nodes=nodes
                )
                end = max(end, self.rt.engine.collective(plan, devices, "dp", "param all-gather"))
            return [None] * len(payloads), end

        self._gathers[(w.index, chunk, block)] += 1
        key = ("gather", w.pp_rank, chunk, block, self._gathers[(w.index, chunk, block)])
        yield from self.rt.meet(w, key, group, None, run, "a ZeRO-3 parameter all-gather")

    def _release_gathered(self, w: Worker) -> None:
        if self._gathered.pop(w.index, None) is not None:
            for dev in w.devices:
                self.rt.engine.memory[dev].free("buffers/gathered parameters")
