"""Which version of a MoE transformer layer a worker runs, and what expert parallelism asks.

A transformer layer whose MLP is a mixture of experts
(:class:`~simulator.nn.moe.MoE`) runs as the tensor-parallel layer of
:mod:`simulator.parallel.tensor` with :class:`~.moe.ExpertParallelMoE` in
place of the MLP's two GEMMs; with one tensor-parallel rank, as the
single-device layer with that MoE in place of its own.
"""

from __future__ import annotations

from typing import Any

from ...errors import LayoutError
from ...nn.moe import MoE
from ...nn.transformer import TransformerLayer
from ..tensor.block import ParallelBlock, ShardMap
from ..tensor.collectives import Region
from ..tensor.compose import Chain, Residual
from ..tensor.gpt import ParallelTransformerLayer
from .moe import ExpertParallelMoE


def is_moe_block(block: Any) -> bool:
    """Whether ``block`` is a transformer layer with a mixture of experts."""
    return isinstance(block, TransformerLayer) and block.moe is not None


def shard_moe_layer(
    layer: TransformerLayer,
    t: int,
    sequence_parallel: bool,
    overlap: bool,
    ep: int,
    ep_rank: int,
    overlap_shared: bool,
    pipelined: bool = False,
) -> ParallelBlock:
    """``layer`` on a tensor-parallel group of ``t`` ranks of expert-parallel rank
    ``ep_rank`` of ``ep`` (module docstring)."""
    assert isinstance(layer.moe, MoE)
    region = Region(t, sequence_parallel, overlap)
    moe = ExpertParallelMoE(layer.moe, region, ep, ep_rank, overlap_shared)
    if t > 1:
        return ParallelTransformerLayer(
            layer, t, sequence_parallel, overlap, mlp=moe, pipelined=pipelined
        )
    attention, mlp = layer.layers
    return Chain(
        layer.name,
        [
            ShardMap([attention]),
            Residual(mlp.name, [ShardMap([layer.ln2]), moe, ShardMap([layer.drop2])]),
        ],
    )


def check_ep(name: str, ep: int, data_ranks: int, model: Any) -> None:
    """A one-line :class:`LayoutError` unless ``ep`` fits: it needs a mixture of
    experts whose experts it divides, and must divide the ``dp`` data ranks it is
    carved out of (experts are not built with context parallelism)."""
    if ep == 1:
        return
    experts = getattr(model, "experts", 0)
    if not experts:
        raise LayoutError(
            f"strategy {name!r}: ep = {ep} shares out experts, and the model has none; set "
            "[model] experts > 0 (a mixture of experts) or ep = 1"
        )
    if experts % ep:
        raise LayoutError(
            f"strategy {name!r}: ep = {ep} does not divide the {experts} experts; every "
            "expert-parallel rank holds experts/ep of them, so choose ep among the divisors "
            f"of {experts}"
        )
    if data_ranks % ep:
        raise LayoutError(
            f"strategy {name!r}: ep = {ep} does not divide dp = {data_ranks}: the "
            "expert-parallel groups are carved out of the data-parallel ranks, so choose ep "
            f"among the divisors of {data_ranks}"
        )
