"""Tensor and sequence parallelism: a layer's work split over a lockstep group.

A worker is a group of ``t`` devices that run every layer together, each on
its shard (docs/design.md, key decision 3), so every value here is a list with one
array per rank, side by side. The story, bottom up:

* :mod:`.block` -- the protocol of a block over a group (:class:`ParallelBlock`),
  and :class:`ShardMap`, which lifts any single-device layer onto it;
* :mod:`.collectives` -- the collectives on the tape and Megatron-LM's
  conjugate operators f and g (Shoeybi et al. 2019, sec. 3), which sequence
  parallelism turns into all-gathers and reduce-scatters (Korthikanti et al.
  2022, sec. 4.2.2);
* :mod:`.linear` -- the column- and row-parallel GEMMs between them;
* :mod:`.grouped` -- column-parallel GEMMs whose shards are not one block:
  grouped-query QKV (key-value heads split or replicated) and SwiGLU's fc1;
* :mod:`.compose` -- chains, residuals, sequence-split dropout, replicas;
* :mod:`.mlp` and :mod:`.gpt` -- the two models, block by block, and
  :mod:`.loss`, the cross-entropy over vocabulary-parallel logits;
* :mod:`.shard` -- which version each block and loss of a model becomes.
"""

from .block import ParallelBlock, ShardLoss, ShardMap
from .collectives import (
    ALGORITHM,
    Region,
    all_gather_sequence,
    collective,
    per_rank,
    reduce_scatter_sequence,
    wait,
)
from .compose import Chain, Residual, SequenceDropout, replicas, summed_over_ranks
from .gpt import ParallelHead, ParallelTransformerLayer, VocabParallelEmbedding
from .grouped import PickedColumns, gated_columns, kv_replicas, qkv_columns
from .linear import ColumnParallel, RowParallel, check_divides, column_shards
from .loss import VocabParallelCrossEntropy
from .shard import shard_block, shard_loss

__all__ = [
    "ALGORITHM",
    "Chain",
    "ColumnParallel",
    "ParallelBlock",
    "ParallelHead",
    "ParallelTransformerLayer",
    "PickedColumns",
    "Region",
    "Residual",
    "RowParallel",
    "SequenceDropout",
    "ShardLoss",
    "ShardMap",
    "VocabParallelCrossEntropy",
    "VocabParallelEmbedding",
    "all_gather_sequence",
    "check_divides",
    "collective",
    "column_shards",
    "gated_columns",
    "kv_replicas",
    "per_rank",
    "qkv_columns",
    "reduce_scatter_sequence",
    "replicas",
    "shard_block",
    "shard_loss",
    "summed_over_ranks",
    "wait",
]
