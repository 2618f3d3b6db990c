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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import comm
from ...engine import Process
from ...engine.memory import ACTIVATIONS, GRADIENTS, OPTIMIZER, PARAMETERS
from ...errors import LayoutError
from ...nn.context import batch
from ...ops.arrays import ShapeArray, concat
from ...ops.tape import on_rank
from ..pipeline.actions import BW, Action, F
from ..program import Op
from ..worker import Worker
from . import ddp
from .ddp import DataParallel

if TYPE_CHECKING:
    from ...runtime.core import Runtime
    from ...runtime.workers import SimWorker
    from ..strategy import Strategy

PRIMARY = 0


def check(s: Strategy) -> None:
    """What ``nn.DataParallel`` cannot combine with, as clear errors (and the
    gradient collectives' rules, which DDP's check states)."""
    ddp.check(s)
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


def lower(w: Worker, _pipeline: list[tuple]) -> list[tuple]:
    """The program of one replica, in place of the pipeline's (one stage, one
    micro-batch); the primary also computes the loss and updates."""
    primary = w.dp_rank == PRIMARY
    return [
        (Op.REPLICATE,),
        (Op.SCATTER_INPUTS,),
        (Op.FORWARD_BODY,),
        (Op.GATHER_OUTPUTS,),
        *([(Op.LOSS_ON_PRIMARY,)] if primary else []),
        (Op.SCATTER_GRADS,),
        (Op.BACKWARD_BODY,),
        (Op.REDUCE_GRADS,),
        *([(Op.PRIMARY_STEP,)] if primary else []),
    ]


class Replicated(DataParallel):
    """Runs the instructions of :func:`lower` (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.group = self.plan.dp_group(0)
        # the model's loss, on the one stage; only the primary applies it, to the
        # gathered outputs
        self.loss = self.group[PRIMARY].chunks[0].loss
        self._state: dict[Any, Any] = {}

    def handlers(self) -> dict[Op, Callable[[SimWorker, tuple], Any]]:
        return {
            Op.REPLICATE: self.replicate,
            Op.SCATTER_INPUTS: self.scatter_inputs,
            Op.FORWARD_BODY: self.forward,
            Op.GATHER_OUTPUTS: self.gather_outputs,
            Op.LOSS_ON_PRIMARY: self.loss_on_primary,
            Op.SCATTER_GRADS: self.scatter_grads,
            Op.BACKWARD_BODY: self.backward,
            Op.REDUCE_GRADS: self.reduce_grads,
            Op.PRIMARY_STEP: self.step,
        }

    def allocate_model_state(self) -> None:
        """Every replica holds parameters and gradients; only the primary optimizer state."""
        for sw in self.rt.workers:
            params = sw.lead.params(0)
            sw.charge(self.rt.engine, PARAMETERS, [sum(p.nbytes for p in params)])
            sw.charge(self.rt.engine, GRADIENTS, [sum(p.nbytes for p in params)])
            if sw.lead.dp_rank == PRIMARY:
                sw.charge(
                    self.rt.engine, OPTIMIZER, [sum(self.optimizer.state_bytes(p) for p in params)]
                )

    def _collective(
        self, sw: SimWorker, op: str, payload: Any, what: str, algorithm: str = "naive"
    ) -> Process:
        """One collective over the replicas, rooted at the primary; returns ``sw``'s result."""
        devices = tuple(m.devices[0] for m in self.group)

        def run(payloads: list[Any]) -> tuple[list[Any], float]:
            layout = self.rt.layout_of(devices)
            outs, plan = comm.collective(op, payloads, algorithm, root=PRIMARY, layout=layout)
            return outs, self.rt.engine.collective(plan, devices, "dp", what)

        handle = yield from self.rt.meetings.meet(
            sw, (op, what), self.group, {sw.lead.index: payload}, run, what
        )
        return handle.results[sw.lead.index]

    def _flat(self, w: Worker, grads: bool) -> Any:
        params = w.params(0)
        if not params:  # a model without parameters (abstract): an empty message
            return ShapeArray((0,), "uint8")
        return concat([(p.grad if grads else p.value).reshape(-1) for p in params])

    def _unflatten(self, w: Worker, flat: Any, grads: bool) -> None:
        offset = 0
        for p in w.params(0):
            target = p.grad if grads else p.value
            target[...] = flat[offset : offset + p.size].reshape(p.shape)
            offset += p.size

    def replicate(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        flat = yield from self._collective(
            sw, "broadcast", self._flat(w, False), "broadcast parameters", "tree"
        )
        if not self.rt.shape_only and w.dp_rank != PRIMARY:
            self._unflatten(w, flat, grads=False)

    def scatter_inputs(self, sw: SimWorker, _: Any) -> Process:
        # only the primary holds data; the others contribute nothing to a scatter
        payload = None
        if sw.lead.dp_rank == PRIMARY:
            payload, self._state["targets"] = self.rt.feed.whole(self.rt.step, self.rt.shape_only)
        piece = yield from self._collective(sw, "scatter", payload, "scatter inputs")
        self._state[("inputs", sw.index)] = piece

    def forward(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        chunk = w.chunks[0]
        x = self._state.pop(("inputs", sw.index))
        with batch(self.rt.feed.info(w, 0, self.rt.step)):
            (out, ctx), compiled = self.rt.replay.priced(
                (0, "F"), lambda: chunk.forward([x], apply_loss=False), sw
            )
        stash = chunk.stash_bytes(ctx, 0)
        self._state[("ctx", sw.index)] = (ctx, stash)
        self._state[("out", sw.index)] = out[0]
        sw.charge(self.rt.engine, ACTIVATIONS, [stash])
        yield from self.rt.replay.run(sw, compiled, Action(0, F, 0))

    def gather_outputs(self, sw: SimWorker, _: Any) -> Process:
        out = self._state.pop(("out", sw.index))
        whole = yield from self._collective(sw, "gather", out, "gather outputs")
        if sw.lead.dp_rank == PRIMARY:
            self._state["outputs"] = whole

    def loss_on_primary(self, sw: SimWorker, _: Any) -> Process:
        outputs, targets = self._state.pop("outputs"), self._state.pop("targets")

        def loss() -> Any:
            with on_rank(0):
                values, ctx = self.loss.forward([outputs], [targets])
                return values, self.loss.backward(ctx, 1.0)

        (values, grads), compiled = self.rt.replay.priced(("loss",), loss, sw)
        if not self.rt.shape_only:
            self.rt.tally.loss(float(values[0]))
        self._state["output grads"] = grads[0]
        yield from self.rt.replay.run(sw, compiled, "loss", "F")

    def scatter_grads(self, sw: SimWorker, _: Any) -> Process:
        payload = self._state.pop("output grads") if sw.lead.dp_rank == PRIMARY else None
        piece = yield from self._collective(sw, "scatter", payload, "scatter output grads")
        self._state[("dy", sw.index)] = piece

    def backward(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        chunk = w.chunks[0]
        dy = self._state.pop(("dy", sw.index))
        ctx, stash = self._state.pop(("ctx", sw.index))
        with batch(self.rt.feed.info(w, 0, self.rt.step)):
            _, compiled = self.rt.replay.priced(
                (0, "BW"), lambda: chunk.backward([dy], ctx, 1.0), sw
            )
        yield from self.rt.replay.run(sw, compiled, Action(0, BW, 0))
        sw.charge(self.rt.engine, ACTIVATIONS, [-stash])

    def reduce_grads(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        summed = yield from self._collective(
            sw, "reduce", self._flat(w, True), "reduce grads", "tree"
        )
        if not self.rt.shape_only and w.dp_rank == PRIMARY:
            self._unflatten(w, summed, grads=True)

    def step(self, sw: SimWorker, _: Any) -> Process:
        yield from self.optimizer_step(sw)
        for m in self.group:
            for p in m.params(0):
                p.zero_grad()
