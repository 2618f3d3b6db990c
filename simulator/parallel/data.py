"""Data parallelism: keeping replicas in agreement, and the optimizer step.

Every data-parallel replica computes the gradient of its share of the batch,
``g_i``; the replicas then combine them so that all apply the same update.
With ``grad_reduction = "mean"`` they average (``g = (1/d) sum g_i``, the
gradient of the mean loss over the global batch, which is what single-device
training computes); with ``"sum"`` they add, as the seed's formula
``g = sum_i g_i`` reads, which multiplies the step by ``d``.

The combination runs as a real collective over the data-parallel group of
every tensor-parallel rank: the devices that hold the same shard in every
replica (:meth:`DataParallel.sync`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .. import comm
from ..arrays import concat, is_shape_only
from ..nn.optim import make_optimizer
from ..tape import Mark, on_rank
from .plan import Worker

Process = Generator[Any, Any, Any]


class DataParallel:
    """Model state, gradient synchronisation and optimizer step for one run."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.plan = runtime.plan
        self.strategy = runtime.plan.strategy
        self.optimizer = make_optimizer(self.plan.training.optimizer, self.plan.training.lr)

    def allocate_model_state(self) -> None:
        """Charge parameters, gradients and optimizer state to every device."""
        for w in self.plan.workers:
            for r, d in enumerate(w.devices):
                params = w.params(r)
                ledger = self.rt.engine.memory[d]
                ledger.allocate("parameters", sum(p.nbytes for p in params))
                ledger.allocate("gradients", sum(p.nbytes for p in params))
                ledger.allocate("optimizer", sum(self.optimizer.state_bytes(p) for p in params))

    def on_mark(self, w: Worker, mark: Mark) -> Process | None:
        """React to a point in a compute tape (nothing to do for plain DDP)."""
        return None

    def sync(self, w: Worker) -> Process:
        """All-reduce the gradients over the data-parallel group (one buffer per rank)."""
        d = self.strategy.dp
        if d == 1:
            return
        group = self.plan.dp_group(w.pp_rank)
        payload = [concat([p.grad.reshape(-1) for p in w.params(r)]) for r in range(len(w.devices))]

        def run(payloads: list[list[Any]]) -> tuple[list[list[Any]], float]:
            results: list[list[Any]] = [[] for _ in group]
            end = self.rt.env.now
            for r in range(len(w.devices)):
                summed, plan = comm.all_reduce(
                    [p[r] for p in payloads], self.strategy.allreduce_algorithm
                )
                devices = tuple(m.devices[r] for m in group)
                end = max(end, self.rt.engine.collective(plan, devices, "dp", "grad all-reduce"))
                for i, s in enumerate(summed):
                    results[i].append(s)
            return results, end

        reduced = yield from self.rt.meet(
            w,
            ("dp-grads", w.pp_rank),
            group,
            payload,
            run,
            "the gradient all-reduce of its replicas",
        )
        scale = 1.0 / d if self.strategy.grad_reduction == "mean" else 1.0
        for r, flat in enumerate(reduced):
            if is_shape_only(flat):
                continue
            params = w.params(r)
            offset = 0
            for p in params:
                p.grad[...] = flat[offset : offset + p.size].reshape(p.shape) * scale
                offset += p.size

    def optimizer_step(self, w: Worker) -> Process:
        """Update every parameter of the worker from its gradient, then zero the gradients."""
        tape_key = ("optimizer", w.pp_rank)

        def step() -> None:
            for r in range(len(w.devices)):
                with on_rank(r):
                    params = w.params(r)
                    self.optimizer.step(params)
                    for p in params:
                        p.zero_grad()

        _, tape = self.rt.run_recorded(tape_key, step)
        yield from self.rt.replay(w, tape, "optimizer", "opt")
