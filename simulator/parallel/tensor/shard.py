"""Which tensor-parallel version a model's block or loss becomes.

The single-device model knows nothing of strategies (its blocks are plain
:mod:`simulator.nn` layers); this is the one place that maps each of them to
the version a tensor-parallel group of ``t`` ranks runs: the MLP's blocks
(:mod:`.mlp`), the GPT's embedding, transformer layers and head
(:mod:`.gpt`), and the GPT's cross-entropy over vocabulary-parallel logits
(:mod:`.loss`).
"""

from __future__ import annotations

from typing import Any

from ...errors import LayoutError
from ...nn.cross_entropy import CrossEntropyLoss
from ...nn.models import MLPBlock
from .block import ParallelBlock, ShardLoss
from .gpt import shard_gpt_block
from .loss import VocabParallelCrossEntropy
from .mlp import shard_mlp_block


def shard_block(
    block: Any, t: int, sequence_parallel: bool, overlap: bool = True, pipelined: bool = False
) -> ParallelBlock:
    """The single-device ``block`` as a tensor-parallel group of ``t`` ranks runs it
    (``overlap`` and ``pipelined``: see :class:`~.collectives.Region`)."""
    if isinstance(block, MLPBlock):
        return shard_mlp_block(block, t, sequence_parallel, overlap)
    sharded = shard_gpt_block(block, t, sequence_parallel, overlap, pipelined)
    if sharded is None:
        raise LayoutError(
            f"tensor parallelism does not know how to split block {block.name!r} "
            f"({type(block).__name__}); use tp = 1 for this model"
        )
    return sharded


def shard_loss(loss: Any, t: int) -> ShardLoss | VocabParallelCrossEntropy:
    """The loss as ``t`` ranks compute it: a cross-entropy over logits split by
    vocabulary (the GPT's head leaves them so, also under sequence parallelism,
    since the head gathers the whole sequence first) without gathering them;
    any other loss on every rank's whole output."""
    if t > 1 and isinstance(loss, CrossEntropyLoss):
        return VocabParallelCrossEntropy(t)
    return ShardLoss([loss] * t)
