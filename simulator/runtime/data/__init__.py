"""Data parallelism at run time: each variant's execution, under its variant's name.

A strategy names its data-parallel variant (``data_parallel``); what the
variant asks of a layout and the programs it lowers to are pure data
(:mod:`simulator.parallel.data`). Running it -- charging the model state,
launching gradient buckets as backward produces them, meeting the other
replicas, stepping the optimizer -- happens here, registered under the same
names (:data:`SYNCS`), through the contract
:class:`~.sync.DataParallelSync`:

* ``ddp`` -- :class:`~.ddp.DataParallel`: PyTorch DDP's all-reduce, with
  buckets, and ZeRO stages 1 to 3 (:mod:`.zero` gathers the parameters);
* ``replicated`` -- :class:`~.replicated.Replicated`: PyTorch's
  ``nn.DataParallel``, one primary device driving every step;
* :func:`~.tied.sync_tied` -- the sum of the gradients of tied copies
  (Megatron-LM's embedding group), which both run at the end of the step.
"""

from __future__ import annotations

from .ddp import DataParallel
from .replicated import Replicated
from .sync import DataParallelSync

#: variant name (:data:`simulator.parallel.data.VARIANTS`) -> what runs it
SYNCS: dict[str, type[DataParallel]] = {"ddp": DataParallel, "replicated": Replicated}


def sync_for(name: str) -> type[DataParallel]:
    """The execution of the data-parallel variant ``name`` (checked when the plan was
    built: every registered variant has one)."""
    return SYNCS[name]


__all__ = ["SYNCS", "DataParallel", "DataParallelSync", "Replicated", "sync_for"]
