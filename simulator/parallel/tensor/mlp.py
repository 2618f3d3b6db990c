"""Tensor parallelism for the MLP model: its blocks paired column then row.

MLP models pair their blocks (Shoeybi et al. 2019, sec. 3, fig. 3a): block
``2i`` is column-parallel, block ``2i+1`` row-parallel, the ReLU between them
runs on each rank's columns. An odd last block has no partner; it is
*replicated*: every rank computes the whole layer on the whole input it holds
after the previous row-parallel block, and gets the same gradient, so it
needs no communication.
"""

from __future__ import annotations

from ...errors import LayoutError
from ...nn.models import MLPBlock
from .block import ParallelBlock, ShardMap
from .collectives import Region
from .compose import Chain, replicas
from .linear import ColumnParallel, RowParallel, check_divides, column_shards


def shard_mlp_block(
    block: MLPBlock, t: int, sequence_parallel: bool, overlap: bool = True
) -> ParallelBlock:
    """Column-parallel, row-parallel or replicated, by the block's place (module docstring)."""
    if sequence_parallel:
        raise LayoutError(
            "sequence_parallel splits a transformer's sequence, and the MLP model has none; "
            "set sequence_parallel = false"
        )
    linear = block.linear
    relu = [ShardMap([block.layers[1]] * t)] if len(block.layers) > 1 else []
    region = Region(t, overlap=overlap)
    if block.index % 2 == 0 and block.index + 1 < block.depth:
        check_divides("MLP width", linear.weight.shape[1], t, "choose a width that tp divides")
        column = ColumnParallel(linear.name, column_shards(linear, t), region, block.name)
        return Chain(block.name, [column, *relu])
    if block.index % 2 == 1:
        check_divides("MLP width", linear.weight.shape[0], t, "choose a width that tp divides")
        return Chain(block.name, [RowParallel(linear, region, block.name), *relu])
    return replicas(block, t)
