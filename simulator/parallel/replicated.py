"""``data_parallel = "replicated"``: PyTorch's ``nn.DataParallel``, step by step.

The seed's data-parallel example wraps the model in ``nn.DataParallel``. One
*primary* device (replica 0) drives everything, every step
(PyTorch ``torch/nn/parallel/data_parallel.py``; Li et al. 2020, VLDB, sec. 2
explain why DDP replaced it):

1. it **broadcasts the parameters** to the other devices (they hold no
   state of their own between steps);
2. it **scatters the inputs**: the global batch lives on the primary;
3. every device runs the forward pass on its slice;
4. the outputs are **gathered** on the primary, which alone computes the loss
   and its gradient over the whole batch;
5. it **scatters the output gradients**; every device runs its backward pass;
6. the parameter gradients are **reduced** (summed) onto the primary, which
   alone runs the optimizer.

Every arrow goes through the primary's ports, and the primary computes the loss
and the update while the others wait: the timeline shows why it is slow. No
averaging is needed: the loss is the mean over the gathered batch, so the sum
of the replicas' gradients *is* the global-batch gradient.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from .. import comm
from ..arrays import concat
from ..errors import LayoutError
from ..nn.context import BatchInfo, batch
from ..tape import on_rank
from .data import DataParallel
from .strategy import Strategy
from .worker import Worker

Process = Generator[Any, Any, Any]
PRIMARY = 0


@dataclass(frozen=True)
class Replicate:
    """Broadcast the primary's parameters to every replica."""

    def __str__(self) -> str:
        return "broadcast parameters from the primary"


@dataclass(frozen=True)
class ScatterInputs:
    def __str__(self) -> str:
        return "scatter the inputs from the primary"


@dataclass(frozen=True)
class ForwardBody:
    def __str__(self) -> str:
        return "forward (no loss)"


@dataclass(frozen=True)
class GatherOutputs:
    def __str__(self) -> str:
        return "gather the outputs on the primary"


@dataclass(frozen=True)
class LossOnPrimary:
    def __str__(self) -> str:
        return "loss and its gradient (primary only)"


@dataclass(frozen=True)
class ScatterGrads:
    def __str__(self) -> str:
        return "scatter the output gradients from the primary"


@dataclass(frozen=True)
class BackwardBody:
    def __str__(self) -> str:
        return "backward"


@dataclass(frozen=True)
class ReduceGrads:
    def __str__(self) -> str:
        return "reduce the gradients onto the primary"


@dataclass(frozen=True)
class PrimaryStep:
    def __str__(self) -> str:
        return "optimizer step (primary only)"


def check(s: Strategy) -> None:
    """What ``nn.DataParallel`` cannot combine with, as clear errors."""
    for key, ok, why in (
        ("tp", s.tp == 1, "it replicates whole models"),
        ("pp", s.pp == 1, "it replicates whole models"),
        ("microbatches", s.microbatches == 1, "it has no gradient accumulation"),
        ("zero", s.zero == 0, "only the primary holds optimizer state anyway"),
        ("bucket_mb", s.bucket_mb == 0, "it reduces all gradients after backward"),
    ):
        if not ok:
            raise LayoutError(
                f"strategy {s.name!r}: data_parallel = 'replicated' needs "
                f"{key} at its default, {why}; use data_parallel = 'ddp'"
            )
    if s.grad_reduction != "mean":
        raise LayoutError(
            f"strategy {s.name!r}: data_parallel = 'replicated' computes one loss "
            "over the gathered batch, so there is nothing to sum; drop "
            "grad_reduction or use data_parallel = 'ddp'"
        )


def lower(w: Worker) -> list[Any]:
    """The program of one replica; the primary also computes the loss and updates."""
    primary = w.dp_rank == PRIMARY
    return [
        Replicate(),
        ScatterInputs(),
        ForwardBody(),
        GatherOutputs(),
        *([LossOnPrimary()] if primary else []),
        ScatterGrads(),
        BackwardBody(),
        ReduceGrads(),
        *([PrimaryStep()] if primary else []),
    ]


class Replicated(DataParallel):
    """Runs the instructions of :func:`lower` (see the module docstring)."""

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self.group = self.plan.dp_group(0)
        self.loss = self.plan.detached_loss
        for kind, handler in (
            (Replicate, self.replicate),
            (ScatterInputs, self.scatter_inputs),
            (ForwardBody, self.forward),
            (GatherOutputs, self.gather_outputs),
            (LossOnPrimary, self.loss_on_primary),
            (ScatterGrads, self.scatter_grads),
            (BackwardBody, self.backward),
            (ReduceGrads, self.reduce_grads),
            (PrimaryStep, self.step),
        ):
            runtime.register(kind, handler)
        self._state: dict[str, Any] = {}

    def allocate_model_state(self) -> None:
        """Every replica holds parameters and gradients; only the primary optimizer state."""
        for w in self.plan.workers:
            (d,) = w.devices
            params = w.params(0)
            ledger = self.rt.engine.memory[d]
            ledger.allocate("parameters", sum(p.nbytes for p in params))
            ledger.allocate("gradients", sum(p.nbytes for p in params))
            if w.dp_rank == PRIMARY:
                ledger.allocate("optimizer", sum(self.optimizer.state_bytes(p) for p in params))

    def _collective(
        self, w: Worker, op: str, payload: Any, what: str, algorithm: str = "naive"
    ) -> Process:
        """One collective over the replicas, rooted at the primary."""
        devices = tuple(m.devices[0] for m in self.group)

        def run(payloads: list[Any]) -> tuple[list[Any], float]:
            outs, plan = comm.collective(op, payloads, algorithm, root=PRIMARY)
            return outs, self.rt.engine.collective(plan, devices, "dp", what)

        result = yield from self.rt.meet(w, (op, what), self.group, payload, run, what)
        return result

    def _flat(self, w: Worker, grads: bool) -> Any:
        return concat([(p.grad if grads else p.value).reshape(-1) for p in w.params(0)])

    def _unflatten(self, w: Worker, flat: Any, grads: bool) -> None:
        offset = 0
        for p in w.params(0):
            target = p.grad if grads else p.value
            target[...] = flat[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def replicate(self, w: Worker, _: Any) -> Process:
        flat = yield from self._collective(
            w, "broadcast", self._flat(w, False), "broadcast parameters", "tree"
        )
        if not self.shape_only and w.dp_rank != PRIMARY:
            self._unflatten(w, flat, grads=False)

    @property
    def shape_only(self) -> bool:
        return self.rt.shape_only

    def _whole_batch(self) -> tuple[Any, Any]:
        training = self.plan.training
        return self.plan.model_config.batch(
            training.seed, self.rt.step, training.global_batch, self.shape_only
        )

    def scatter_inputs(self, w: Worker, _: Any) -> Process:
        # only the primary holds data; the others contribute nothing to a scatter
        payload = None
        if w.dp_rank == PRIMARY:
            payload, self._state["targets"] = self._whole_batch()
        piece = yield from self._collective(w, "scatter", payload, "scatter inputs")
        self._state[("inputs", w.index)] = piece

    def forward(self, w: Worker, _: Any) -> Process:
        chunk = w.chunks[0]
        x = self._state.pop(("inputs", w.index))
        info = self._info(w)
        with batch(info):
            (out, ctx), tape = self.rt.run_recorded((0, "F"), lambda: chunk.forward([x]))
        self._state[("ctx", w.index)] = ctx
        self._state[("out", w.index)] = out[0]
        self.rt.engine.memory[w.devices[0]].allocate(
            "activations/replica", chunk.stash_bytes(ctx, 0)
        )
        yield from self.rt.replay(w, tape, "F", "F", chunk=0, mb=0)

    def _info(self, w: Worker) -> BatchInfo:
        size = self.plan.micro_batch_size
        training = self.plan.training
        first = self.rt.step * training.global_batch + w.dp_rank * size
        return BatchInfo(training.seed, self.rt.step, first, size)

    def gather_outputs(self, w: Worker, _: Any) -> Process:
        out = self._state.pop(("out", w.index))
        whole = yield from self._collective(w, "gather", out, "gather outputs")
        if w.dp_rank == PRIMARY:
            self._state["outputs"] = whole

    def loss_on_primary(self, w: Worker, _: Any) -> Process:
        outputs, targets = self._state.pop("outputs"), self._state.pop("targets")

        def loss() -> Any:
            with on_rank(0):
                values, ctx = self.loss.forward([outputs], [targets])
                return values, self.loss.backward(ctx, 1.0)

        (values, grads), tape = self.rt.run_recorded(("loss",), loss)
        if not self.shape_only:
            self.rt.record_loss(float(values[0]))
        self._state["output grads"] = grads[0]
        yield from self.rt.replay(w, tape, "loss", "F", chunk=0, mb=0)

    def scatter_grads(self, w: Worker, _: Any) -> Process:
        payload = self._state.pop("output grads") if w.dp_rank == PRIMARY else None
        piece = yield from self._collective(w, "scatter", payload, "scatter output grads")
        self._state[("dy", w.index)] = piece

    def backward(self, w: Worker, _: Any) -> Process:
        chunk = w.chunks[0]
        dy = self._state.pop(("dy", w.index))
        ctx = self._state.pop(("ctx", w.index))
        with batch(self._info(w)):
            _, tape = self.rt.run_recorded((0, "BW"), lambda: chunk.backward([dy], ctx, 1.0))
        yield from self.rt.replay(w, tape, "B", "BW", chunk=0, mb=0)
        self.rt.engine.memory[w.devices[0]].free("activations/replica")

    def reduce_grads(self, w: Worker, _: Any) -> Process:
        summed = yield from self._collective(
            w, "reduce", self._flat(w, True), "reduce grads", "tree"
        )
        if not self.shape_only and w.dp_rank == PRIMARY:
            self._unflatten(w, summed, grads=True)

    def step(self, w: Worker, _: Any) -> Process:
        yield from self.optimizer_step(w)
        for m in self.group:
            for p in m.params(0):
                p.zero_grad()
