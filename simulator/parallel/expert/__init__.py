"""Expert parallelism: the experts of a mixture of experts shared out over data ranks.

Megatron-Core's layout (docs/design.md, key decision 10): an expert-parallel
group of ``ep`` ranks is carved out of the ``dp`` data-parallel ranks
(:meth:`simulator.parallel.mesh.Mesh.ep_group`); each rank holds ``E / ep``
of every MoE layer's experts, and the tokens travel to their experts and back
in two all-to-alls per layer and direction. The experts' gradients are
reduced over the ``dp / ep`` ranks that hold the same experts (the
expert-data-parallel group), everything else over all ``dp``
(:mod:`simulator.runtime.data.ddp`). Experts are not built with context
parallelism (``cp > 1``): the strategy refuses ``ep > 1`` with it.

* :mod:`.exchange` -- the dispatch and combine all-to-alls as tape items, and
  how layer code waits for what the other ranks send;
* :mod:`.moe` -- :class:`~.moe.ExpertParallelMoE`, the layer on one
  tensor-parallel group of one expert-parallel rank;
* :mod:`.layer` -- which version of a MoE transformer layer a worker runs, and
  the checks ``ep`` must pass.
"""

from .exchange import Exchange, Ticket, receive, send, waiting_with
from .layer import check_ep, is_moe_block, shard_moe_layer
from .moe import ExpertParallelMoE

__all__ = [
    "Exchange",
    "ExpertParallelMoE",
    "Ticket",
    "check_ep",
    "is_moe_block",
    "receive",
    "send",
    "shard_moe_layer",
    "waiting_with",
]
