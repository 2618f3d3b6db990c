"""Composing tensor-parallel blocks: the pieces between the parallel GEMMs.

Chains of blocks (a rank's context is the list of its blocks' contexts),
residual additions, dropout on sequence shards, replicated layers, and the
sum over ranks of gradients that sequence parallelism leaves partial.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from ... import ops
from ...nn.combinators import Composite, WithResidual
from ...nn.dropout import Dropout
from ...nn.layers import Layer
from ...nn.param import Param
from ...ops.arrays import Array, concat, like
from .block import ParallelBlock, ShardMap
from .collectives import collective, in_groups, per_rank


def by_rank(parts: list[list[Any]]) -> list[list[Any]]:
    """Per-part lists of per-rank values -> per-rank lists of per-part values."""
    return [list(values) for values in zip(*parts, strict=True)]


class Chain(Composite, ParallelBlock):
    """Parallel blocks applied in order; rank ``r``'s context is the list of theirs
    (the combinator of :mod:`simulator.nn.combinators`, over per-rank lists)."""

    def __init__(self, name: str, blocks: list[ParallelBlock]) -> None:
        self.name = name
        self.blocks = blocks
        self.ranks = blocks[0].ranks
        self.shards_output = None
        for block in blocks:
            if block.shards_output is not None:
                self.shards_output = block.shards_output

    @property
    def parts(self) -> list[ParallelBlock]:  # type: ignore[override]
        return self.blocks

    def join(self, ctxs: list[Any]) -> list[Any]:
        return by_rank(ctxs)

    def part(self, ctx: list[Any], i: int) -> list[Any]:
        return [c[i] for c in ctx]

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        """Each block's B and W together, last block first, so blocks that overlap
        their collectives with their GEMMs can (:meth:`ParallelBlock.backward`)."""
        for i in reversed(range(len(self.blocks))):
            dys = self.blocks[i].backward(dys, [c[i] for c in ctx])
        return dys

    def params(self, rank: int) -> list[Param]:
        return [p for b in self.blocks for p in b.params(rank)]

    def borrowed(self, rank: int) -> list[Param]:
        return [p for b in self.blocks for p in b.borrowed(rank)]

    def expert_params(self, rank: int) -> list[Param]:
        return [p for b in self.blocks for p in b.expert_params(rank)]

    def own_copy(self, rank: int, param: Param) -> Param:
        (block,) = [b for b in self.blocks if any(p is param for p in b.borrowed(rank))]
        return block.own_copy(rank, param)

    def configure(self, selective: bool) -> None:
        for block in self.blocks:
            block.configure(selective)

    def full_params(self) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for block in self.blocks:
            out.update(block.full_params())
        return out


class Residual(WithResidual, Chain):
    """``x + blocks(x)`` on every rank (:class:`simulator.nn.combinators.Residual`)."""

    def add(self, a: list[Array], b: list[Array], name: str) -> list[Array]:
        return per_rank(self.ranks, lambda r: ops.add(a[r], b[r], name=name))

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        return self.add(dys, super().backward(dys, ctx), f"{self.name}.residual.dx")


class SequenceDropout(ParallelBlock):
    """Dropout on sequence shards: rank ``r`` of ``t`` holding ``n`` positions applies
    positions ``r n .. (r+1) n - 1`` of every sample's single-device mask
    (:meth:`simulator.nn.dropout.Dropout.sliced`)."""

    def __init__(self, dropout: Dropout, t: int) -> None:
        self.name = dropout.name
        self.dropout = dropout
        self.ranks = t

    def _window(self, r: int, x: Array) -> Dropout:
        n = x.shape[1]
        return self.dropout.sliced((slice(r * n, (r + 1) * n),), (self.ranks * n,))

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        outs = per_rank(self.ranks, lambda r: self._window(r, xs[r]).forward(xs[r]))
        return [y for y, _ in outs], [mask for _, mask in outs]

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        dxs = per_rank(self.ranks, lambda r: self.dropout.backward_input(dys[r], ctx[r])[0])
        return dxs, [None] * self.ranks

    def backward_weight(self, wctx: list[Any]) -> None:
        """Dropout has no parameters."""

    def params(self, rank: int) -> list[Param]:
        return []

    def full_params(self) -> dict[str, Array]:
        return {}


def replicas(layer: Layer, t: int) -> ShardMap:
    """``t`` copies of ``layer``, one per rank, each with its own parameters."""
    return ShardMap([layer, *(copy.deepcopy(layer) for _ in range(t - 1))])


@contextlib.contextmanager
def summed_over_ranks(
    params: list[list[Param]], label: str, groups: list[list[int]] | None = None
) -> Iterator[None]:
    """Inside the block, the gradients of the replicated ``params`` (a list per rank)
    become their sums over the ranks (over each of ``groups`` of them, when given:
    the tensor-parallel groups of a context-parallel worker).

    Under sequence parallelism each rank's layer norms (and row-parallel
    biases) see only its ``s/t`` positions, so each rank's gradient is a
    partial sum. The block writes this micro-batch's gradients into fresh
    buffers; one all-reduce adds them across the group and the sums are
    added to the accumulated gradients. Megatron-LM all-reduces these
    gradients once per step instead (``_allreduce_layernorm_grads``, after
    the last micro-batch): the total is the same sum over ranks and
    micro-batches, only added in another order, and doing it per micro-batch
    keeps every replica's gradient complete whenever data parallelism reads it.
    """
    kept = [[p.grad for p in ps] for ps in params]
    for ps in params:
        for p in ps:
            p.grad = like(p.grad)
    yield
    fresh = [concat([p.grad.reshape(-1) for p in ps]) for ps in params]
    if groups is None:
        summed = collective("all_reduce", fresh, label)
    else:
        summed = in_groups("all_reduce", fresh, groups, label)
    for ps, grads, flat in zip(params, kept, summed, strict=True):
        offset = 0
        for p, g in zip(ps, grads, strict=True):
            g += flat[offset : offset + p.size].reshape(p.shape)
            p.grad = g
            offset += p.size
