"""The model's blocks as a ``cp x tp`` group runs them.

Every context-parallel rank ``c`` gets its own copy of the model, told which
tokens it holds (:func:`at_positions`: the positions its position table and
dropout masks read), and split for tensor parallelism as
:mod:`simulator.parallel.tensor` splits it. Then:

* a transformer layer becomes :class:`ContextParallelLayer`: the copies'
  layers side by side (:class:`~.lockstep.Lockstep`), part by part, except
  the attention core, which is one :class:`~.attention.ContextParallelAttention`
  over the whole group;
* every other block (the embedding, the head, ...) runs side by side whole;
* the loss is :class:`~.lockstep.LockstepLoss`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ...nn.attention import AttentionCore
from ...nn.embedding import Embedding
from ...nn.models import Model
from ...nn.param import Param
from ...nn.transformer import TransformerLayer
from ..tensor import Chain, ParallelBlock, Residual, ShardMap
from ..tensor.compose import summed_over_ranks
from ..tensor.gpt import ParallelTransformerLayer, Sharded
from .attention import ContextParallelAttention
from .layout import TokenLayout
from .lockstep import Lockstep


def at_positions(model: Model, positions: np.ndarray, seq_len: int) -> None:
    """Tell a copy of ``model`` that it holds the tokens at ``positions`` of every
    sequence of ``seq_len``: its position table reads their rows, and every dropout
    on the hidden activations applies those positions of the single-device mask
    (the attention core's positions are the algorithm's, :mod:`.attention`)."""
    window, full = (positions,), (seq_len,)
    for block in model.blocks:
        if isinstance(block, Embedding):
            block.held = positions
            block.dropout = block.dropout.sliced(window, full)
        elif isinstance(block, TransformerLayer):
            block.drop1 = block.drop1.sliced(window, full)
            block.drop2 = block.drop2.sliced(window, full)


def _body(block: ParallelBlock) -> Chain:
    """The parallel parts of a transformer layer over a tensor-parallel group: a
    :class:`~simulator.parallel.tensor.ParallelTransformerLayer`'s, or for one rank
    the single-device layer's parts, each on its own."""
    if isinstance(block, ParallelTransformerLayer):
        return block.body
    assert isinstance(block, ShardMap)
    (layer,) = block.layers
    assert isinstance(layer, TransformerLayer)

    def one(*parts: Any) -> list[ParallelBlock]:
        return [ShardMap([p]) for p in parts]

    name = layer.name
    attention = one(layer.ln1, layer.qkv, layer.core, layer.proj, layer.drop1)
    mlp = one(layer.ln2, layer.fc1, layer.activation, layer.fc2, layer.drop2)
    return Chain(name, [Residual(f"{name}.attn", attention), Residual(f"{name}.mlp", mlp)])


def _is_core(block: ParallelBlock) -> bool:
    return isinstance(block, ShardMap) and isinstance(block.layers[0], AttentionCore)


class ContextParallelLayer(Sharded):
    """A transformer layer over a ``cp x tp`` group (module docstring): rank ``c t + r``
    runs tensor-parallel rank ``r`` of copy ``c``; the attention core is the group's.

    Under sequence parallelism the norms' gradients are partial sums over each
    tensor-parallel group (:class:`~simulator.parallel.tensor.gpt.Sharded`), added
    inside each group; the sums over the context-parallel ranks are the
    data-parallel reduction's (over ``dp x cp``).
    """

    def __init__(
        self, copies: list[ParallelBlock], layout: TokenLayout, algorithm: str, same: bool
    ) -> None:
        first = copies[0]
        self.copies = copies
        self.t = first.ranks
        self.ranks = len(copies) * self.t
        self.name = first.name
        self.recomputable = first.recomputable
        self.region = getattr(first, "region", None)
        bodies = [_body(c) for c in copies]
        cores = [core for body in bodies for core in self._core(body).layers]
        self.attention = ContextParallelAttention(
            cores, self.t, layout, algorithm, f"{self.name} attention"
        )
        self.body = self._zip(bodies, same)

    def _core(self, body: ParallelBlock) -> ShardMap:
        found = [b for b in _walk(body) if _is_core(b)]
        assert len(found) == 1, "a transformer layer has one attention core"
        return found[0]  # type: ignore[return-value]

    def _zip(self, nodes: list[ParallelBlock], same: bool) -> ParallelBlock:
        """The copies' parts side by side, the core replaced by the group's."""
        first = nodes[0]
        if isinstance(first, Chain):
            parts = [
                self._zip([n.blocks[i] for n in nodes], same) for i in range(len(first.blocks))
            ]  # type: ignore[attr-defined]
            return (Residual if isinstance(first, Residual) else Chain)(first.name, parts)
        if _is_core(first):
            return self.attention
        return Lockstep(nodes, same)

    def partial(self, rank: int) -> list[Param]:
        block = self.copies[rank // self.t]
        return block.partial(rank % self.t) if isinstance(block, Sharded) else []

    def _partial_sums(self) -> Any:
        if self.region is None or not self.region.sequence_parallel:
            return contextlib.nullcontext()
        params = [self.partial(r) for r in range(self.ranks)]
        groups = [list(range(c * self.t, (c + 1) * self.t)) for c in range(len(self.copies))]
        return summed_over_ranks(params, f"all-reduce layernorm grads ({self.name})", groups)

    def full_params(self) -> dict[str, Any]:
        return self.copies[0].full_params()


def _walk(block: ParallelBlock) -> list[ParallelBlock]:
    if isinstance(block, Chain):
        return [b for part in block.blocks for b in _walk(part)]
    return [block]


def context_block(
    copies: list[ParallelBlock], layout: TokenLayout, algorithm: str, same: bool
) -> ParallelBlock:
    """The copies of one block (one per context-parallel rank, each over its
    tensor-parallel group) as the whole group runs it (module docstring)."""
    first = copies[0]
    inner = first.layers[0] if isinstance(first, ShardMap) else None
    if isinstance(first, ParallelTransformerLayer) or isinstance(inner, TransformerLayer):
        return ContextParallelLayer(copies, layout, algorithm, same)
    return Lockstep(copies, same)
