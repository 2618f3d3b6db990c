"""``data_parallel = "replicated"`` at run time: PyTorch's ``nn.DataParallel``, step by step.

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
of the replicas' gradients *is* the global-batch gradient. The program of each
replica, and what this variant cannot combine with, are
:mod:`simulator.parallel.data.replicated`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...engine import Process
from ...engine.memory import ACTIVATIONS, GRADIENTS, OPTIMIZER, PARAMETERS
from ...nn.context import batch
from ...ops.arrays import ShapeArray, concat
from ...ops.tape import on_rank
from ...parallel.data.replicated import PRIMARY
from ...parallel.pipeline.actions import BW, Action, F
from ...parallel.program import Op
from ...parallel.worker import Worker
from ..workers import SimWorker
from .ddp import DataParallel


class Replicated(DataParallel):
    """Runs the instructions of :func:`~simulator.parallel.data.replicated.lower` (see the
    module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        for sw in self.workers:
            params = sw.lead.params(0)
            sw.charge(self.engine, PARAMETERS, [sum(p.nbytes for p in params)])
            sw.charge(self.engine, GRADIENTS, [sum(p.nbytes for p in params)])
            if sw.lead.dp_rank == PRIMARY:
                sw.charge(
                    self.engine, OPTIMIZER, [sum(self.optimizer.state_bytes(p) for p in params)]
                )

    def _collective(
        self, sw: SimWorker, op: str, payload: Any, what: str, algorithm: str = "naive"
    ) -> Process:
        """One collective over the replicas, rooted at the primary; returns ``sw``'s result."""

        def run(payloads: list[Any]) -> tuple[list[Any], float]:
            outs, end = self.meetings.per_rank(
                op, algorithm, self.group, [[p] for p in payloads], "dp", what, root=PRIMARY
            )
            return [out for (out,) in outs], end

        handle = yield from self.meetings.meet(
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
        if self.numerics and w.dp_rank != PRIMARY:
            self._unflatten(w, flat, grads=False)

    def scatter_inputs(self, sw: SimWorker, _: Any) -> Process:
        # only the primary holds data; the others contribute nothing to a scatter
        payload = None
        if sw.lead.dp_rank == PRIMARY:
            payload, self._state["targets"] = self.feed.whole(self.feed.step_of(sw.lead))
        piece = yield from self._collective(sw, "scatter", payload, "scatter inputs")
        self._state[("inputs", sw.index)] = piece

    def forward(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        chunk = w.chunks[0]
        x = self._state.pop(("inputs", sw.index))
        with batch(self.feed.info(w, 0)):
            (out, ctx), compiled = self.replay.priced(
                (0, "F"), lambda: chunk.forward([x], apply_loss=False), sw
            )
        stash = chunk.stash_bytes(ctx, 0)
        self._state[("ctx", sw.index)] = (ctx, stash)
        self._state[("out", sw.index)] = out[0]
        sw.charge(self.engine, ACTIVATIONS, [stash])
        yield from self.replay.run(sw, compiled, Action(0, F, 0))

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

        (values, grads), compiled = self.replay.priced(("loss",), loss, sw)
        if self.numerics:
            self.tally.loss(float(values[0]), sw.step)
        self._state["output grads"] = grads[0]
        yield from self.replay.run(sw, compiled, "loss", "F")

    def scatter_grads(self, sw: SimWorker, _: Any) -> Process:
        payload = self._state.pop("output grads") if sw.lead.dp_rank == PRIMARY else None
        piece = yield from self._collective(sw, "scatter", payload, "scatter output grads")
        self._state[("dy", sw.index)] = piece

    def backward(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        chunk = w.chunks[0]
        dy = self._state.pop(("dy", sw.index))
        ctx, stash = self._state.pop(("ctx", sw.index))
        with batch(self.feed.info(w, 0)):
            _, compiled = self.replay.priced((0, "BW"), lambda: chunk.backward([dy], ctx, 1.0), sw)
        yield from self.replay.run(sw, compiled, Action(0, BW, 0))
        sw.charge(self.engine, ACTIVATIONS, [-stash])

    def reduce_grads(self, sw: SimWorker, _: Any) -> Process:
        w = sw.lead
        summed = yield from self._collective(
            sw, "reduce", self._flat(w, True), "reduce grads", "tree"
        )
        if self.numerics and w.dp_rank == PRIMARY:
            self._unflatten(w, summed, grads=True)

    def step(self, sw: SimWorker, _: Any) -> Process:
        yield from self.optimizer_step(sw)
        for m in self.group:
            for p in m.params(0):
                p.zero_grad()
