"""Context parallelism: every sequence split over devices, attention exchanging keys and values.

A context-parallel group of ``cp`` ranks holds ``s/cp`` tokens of every
sequence of the micro-batch on each rank, and every layer but attention runs
on them alone; attention needs every earlier key, so there the ranks talk,
by one of three algorithms (``context_parallel``):

* ``ring`` -- Ring Attention (Liu et al. 2023) as Megatron-Core and
  TransformerEngine run it: keys and values travel around the ring in
  ``cp - 1`` point-to-point steps, each overlapped with attention on the block
  already held, the partial results merged by their log-sum-exp; the
  backward sends the keys and values around again, and the gradients of the
  keys and values with them;
* ``allgather`` -- the Llama 3 Herd of Models (sec. 3.3.2): all-gather the
  keys and values, attend with the local queries; the backward
  reduce-scatters their gradients;
* ``ulysses`` -- DeepSpeed-Ulysses (Jacobs et al. 2023): all-to-all from
  sequence-sharded to head-sharded queries, keys and values, attention over
  the whole sequence on ``1/cp`` of the heads, and an all-to-all back.

Read in this order:

* :mod:`.layout` -- which tokens each rank holds (``2 cp`` chunks, rank ``r``
  holding ``r`` and ``2 cp - 1 - r``, so causal work is balanced);
* :mod:`.lockstep` -- a worker of ``cp x tp`` devices: the tensor-parallel
  code of every context-parallel rank run side by side, recorded as one
  lockstep group;
* :mod:`.attention` -- the attention core over the group, and the three
  algorithms: :mod:`.ring`, :mod:`.allgather`, :mod:`.ulysses`;
* :mod:`.layer` -- the transformer layer with that core, and the other
  blocks and the loss side by side;
* :mod:`.checks` -- what must divide what.

The weights are replicated over the group, as over data-parallel replicas,
and their gradients are reduced over ``dp x cp`` (Megatron-Core's
data-parallel group with context parallelism; :mod:`simulator.runtime.data`).
"""

#: The algorithms of ``context_parallel``, in the order the docs list them.
ALGORITHMS = ("ring", "allgather", "ulysses")

__all__ = ["ALGORITHMS"]
