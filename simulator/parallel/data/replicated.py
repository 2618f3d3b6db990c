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

Here: what it cannot combine with (:func:`check`) and each replica's program
(:func:`lower`); the runtime runs the steps
(:mod:`simulator.runtime.data.replicated`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LayoutError
from ..program import Op
from ..worker import Worker
from . import ddp

if TYPE_CHECKING:
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
