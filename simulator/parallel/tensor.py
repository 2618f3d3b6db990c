"""Tensor parallelism: Megatron-LM's column- and row-parallel layers, shards side by side.

Megatron-LM (Shoeybi et al. 2019, sec. 3, fig. 3) splits the two GEMMs of a
transformer MLP, ``Y = act(X A)`` and ``Z = Y B``, over ``t`` ranks: ``A`` by
columns, so rank ``r`` computes ``Y_r = act(X A_r)`` on its own (``act`` is
elementwise), and ``B`` by rows, so rank ``r``'s ``Y_r B_r`` is a partial
sum of ``Z``. Attention splits the same way by heads. One pair of GEMMs then
needs exactly two collectives, at two *conjugate* operators:

* **f**, entering the parallel region before ``A``: identity forward (every
  rank already holds ``X``), all-reduce backward (each rank's ``dX`` is a
  partial sum);
* **g**, leaving it after ``B``: all-reduce forward (adds the partial sums),
  identity backward (every rank needs the whole ``dZ``).

A worker is a lockstep group of ``t`` devices (DESIGN.md, key decision 3), so
every value here is a list with one array per rank, ``xs[r]``, and every
rank's work runs under :func:`~simulator.tape.on_rank`. Collectives run
through :mod:`simulator.comm` on the real arrays and are recorded on the tape
as :class:`~simulator.tape.CollectiveCall` of kind ``"tp"``; the runtime
replays them on the group's links, in the middle of the layer's forward or
backward, where they show on the timeline. Per transformer layer and
micro-batch that is four all-reduces of ``b s h`` elements, which a ring
sends ``2 (t-1)/t`` times each: ``8 b s h (t-1)/t`` elements per device
(Narayanan et al. 2021, sec. 3.2).

**Sequence parallelism** (Korthikanti et al. 2022, sec. 4.2.2, fig. 5) splits
what lies *between* the parallel regions -- layer norms, dropouts, residual
additions -- along the sequence. f becomes an all-gather forward and a
reduce-scatter backward (their ``g``), g a reduce-scatter forward and an
all-gather backward (their ``g-bar``). An all-reduce *is* a reduce-scatter
followed by an all-gather, so the bytes of the conjugates are unchanged.
The column-parallel GEMM's weight gradient needs the whole sequence of its
input. Korthikanti et al. (2022, table 2) count only the rank's part of it
among the stored activations, so it is all-gathered once more in the
weight-gradient pass, as Megatron-LM's
``LinearWithGradAccumulationAndAsyncCommunication`` does: ``2 b s h (t-1)/t``
more elements per layer, the price of ``sbh(34 + 5as/h)/t`` activation bytes
instead of ``sbh(10 + 24/t + 5as/(ht))``.

This module holds the collectives, f and g (:class:`Region`) and the two
parallel GEMMs; :mod:`.tensor_blocks` composes them and shards the MLP,
:mod:`.tensor_gpt` the GPT's blocks and :mod:`.tensor_loss` its loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import comm, ops
from ..arrays import Array, concat
from ..errors import LayoutError
from ..nn.layers import Layer, Linear
from ..nn.models import MLPBlock
from ..nn.param import Param
from ..tape import CollectiveCall, Wait, new_handle, on_rank, record
from .shard import ParallelBlock

T = TypeVar("T")
#: Megatron-LM runs tensor-parallel collectives through NCCL, whose tuner picks the
#: algorithm per message size and group layout (:mod:`simulator.comm.tuner`).
ALGORITHM = "auto"


# -- collectives on the tape ------------------------------------------------------------------
def collective(op: str, xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """Run ``op`` over the ranks' arrays and record it for the runtime to time; with a
    ``handle`` it runs alongside what follows until :func:`wait` (the numbers are
    computed now either way)."""
    outs, plan = comm.collective(op, xs, ALGORITHM)
    record(CollectiveCall(op, plan.algorithm, "tp", plan, label, handle))
    return outs


def wait(handle: int) -> None:
    """The code needs the asynchronous collective ``handle``'s result from here on."""
    record(Wait(handle))


def all_gather_sequence(xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """``(b, s/t, ...)`` sequence shards -> the whole ``(b, s, ...)`` on every rank.

    Collectives cut and join along the first axis; Megatron-LM keeps its
    activations sequence-first ``[s, b, h]`` for that reason. Ours are
    ``(b, s, h)``, so they are viewed sequence-first around the collective
    (a view, so no kernel).
    """
    outs = collective("all_gather", [x.swapaxes(0, 1) for x in xs], label, handle)
    return [out.swapaxes(0, 1) for out in outs]


def reduce_scatter_sequence(xs: list[Array], label: str, handle: int = -1) -> list[Array]:
    """Sum the ranks' ``(b, s, ...)`` arrays; rank ``r`` keeps positions ``r s/t .. (r+1) s/t``."""
    b, s, *rest = xs[0].shape
    outs = collective("reduce_scatter", [x.swapaxes(0, 1) for x in xs], label, handle)
    return [out.reshape(s // len(xs), b, *rest).swapaxes(0, 1) for out in outs]


def per_rank(t: int, fn: Callable[[int], T]) -> list[T]:
    """``[fn(0), ..., fn(t-1)]``, the ops of call ``r`` attributed to rank ``r``."""
    out = []
    for r in range(t):
        with on_rank(r):
            out.append(fn(r))
    return out


@dataclass(frozen=True)
class Region:
    """The conjugate operators f and g around a tensor-parallel region.

    ``where`` names the layer in the collectives' labels, e.g.
    ``"f: all-reduce dx (layer0 attention)"``. ``overlap`` lets the backward
    of a column-parallel GEMM run its collectives alongside its GEMMs, as
    Megatron-LM does (:meth:`ColumnParallel.backward`).
    """

    t: int
    sequence_parallel: bool = False
    overlap: bool = True

    def enter(self, xs: list[Array], where: str) -> list[Array]:
        """f forward: identity, or all-gather the sequence."""
        if self.sequence_parallel:
            return all_gather_sequence(xs, f"f: all-gather x ({where})")
        return xs

    def enter_backward(self, dxs: list[Array], where: str, handle: int = -1) -> list[Array]:
        """f backward: add the ranks' partial input gradients."""
        if self.sequence_parallel:
            return reduce_scatter_sequence(dxs, f"f: reduce-scatter dx ({where})", handle)
        return collective("all_reduce", dxs, f"f: all-reduce dx ({where})", handle)

    def leave(self, ys: list[Array], where: str) -> list[Array]:
        """g forward: add the ranks' partial outputs."""
        if self.sequence_parallel:
            return reduce_scatter_sequence(ys, f"g: reduce-scatter y ({where})")
        return collective("all_reduce", ys, f"g: all-reduce y ({where})")

    def leave_backward(self, dys: list[Array], where: str) -> list[Array]:
        """g backward: identity, or all-gather the sequence."""
        if self.sequence_parallel:
            return all_gather_sequence(dys, f"g: all-gather dy ({where})")
        return dys

    def regather(self, xs: list[Array], where: str, handle: int = -1) -> list[Array]:
        """The whole input again for a weight gradient (sequence parallelism keeps a shard)."""
        if self.sequence_parallel:
            return all_gather_sequence(xs, f"all-gather x again for dW ({where})", handle)
        return xs


# -- the two parallel GEMMs --------------------------------------------------------------------
def own(x: Array) -> Array:
    """A copy, so that a shard never aliases the single-device array it was cut from."""
    return x.copy()


def column_shards(linear: Linear, t: int) -> list[Linear]:
    """``linear`` cut into ``t`` blocks of output columns (weight and bias)."""
    out = linear.weight.shape[1]
    cuts = [slice(r * out // t, (r + 1) * out // t) for r in range(t)]
    return [
        Linear(
            linear.name,
            own(linear.weight.value[:, cut]),
            None if linear.bias is None else own(linear.bias.value[cut]),
        )
        for cut in cuts
    ]


class ColumnParallel(ParallelBlock):
    """``Y = f(X) A`` with ``A`` split by output columns: rank ``r`` computes ``X A_r``.

    Shoeybi et al. 2019, sec. 3: the first GEMM of the MLP (fig. 3a) and the
    per-head query, key and value projection (fig. 3b). The shards are
    single-device layers (a :class:`~simulator.nn.layers.Linear` cut by
    columns, or the tied logits over a vocabulary shard); ``axis`` is the axis
    of their weight that holds the output columns, for :meth:`full_params`.

    What backward keeps is the input as it arrived: the whole ``X`` under
    plain tensor parallelism, this rank's part of the sequence under sequence
    parallelism (gathered again in W, see the module docstring).
    """

    shards_output = True

    def __init__(
        self, name: str, shards: list[Layer], region: Region, where: str, axis: int = 1
    ) -> None:
        self.name = name
        self.shards = shards
        self.ranks = len(shards)
        self.region = region
        self.where = where
        self.axis = axis

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        inputs = self.region.enter(xs, self.where)
        ys = per_rank(self.ranks, lambda r: self.shards[r].forward(inputs[r])[0])
        return ys, list(xs)

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        outs = per_rank(self.ranks, lambda r: self.shards[r].backward_input(dys[r], ctx[r]))
        dxs = self.region.enter_backward([dx for dx, _ in outs], self.where)
        return dxs, [w for _, w in outs]

    def backward_weight(self, wctx: list[Any]) -> None:
        inputs = self.region.regather([x for x, _ in wctx], self.where)
        per_rank(self.ranks, lambda r: self.shards[r].backward_weight((inputs[r], wctx[r][1])))

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        """B and W together, their collectives alongside the GEMMs that do not need them.

        Megatron-LM's ``LinearWithGradAccumulationAndAsyncCommunication``
        (``megatron/core/tensor_parallel/layers.py``; Narayanan et al. 2021,
        sec. 4.2): under sequence parallelism the input is all-gathered while
        the input-gradient GEMM runs; then the input gradient's all-reduce
        (reduce-scatter under sequence parallelism) runs while the
        weight-gradient GEMM does. Without ``overlap``, one after the other.
        """
        if not self.region.overlap:
            return super().backward(dys, ctx)
        region, where = self.region, self.where
        gather = new_handle() if region.sequence_parallel else -1
        inputs = region.regather(list(ctx), where, gather)
        outs = per_rank(self.ranks, lambda r: self.shards[r].backward_input(dys[r], ctx[r]))
        if gather >= 0:
            wait(gather)
        reduce = new_handle()
        dxs = region.enter_backward([dx for dx, _ in outs], where, reduce)
        per_rank(self.ranks, lambda r: self.shards[r].backward_weight((inputs[r], outs[r][1][1])))
        wait(reduce)
        return dxs

    def params(self, rank: int) -> list[Param]:
        return self.shards[rank].parameters()

    def borrowed(self, rank: int) -> list[Param]:
        return self.shards[rank].borrowed()

    def own_copy(self, rank: int, param: Param) -> Param:
        return self.shards[rank].own_copy(param)

    def full_params(self) -> dict[str, Array]:
        joined = zip(*(s.parameters() for s in self.shards), strict=True)
        return {
            ps[0].name: concat([p.value for p in ps], self.axis if len(ps[0].shape) > 1 else 0)
            for ps in joined
        }


class RowParallel(ParallelBlock):
    """``Z = g(sum_r Y_r B_r) + b`` with ``B`` split by input rows.

    Shoeybi et al. 2019, sec. 3: the second GEMM of the MLP (fig. 3a) and the
    attention output projection (fig. 3b). Rank ``r`` multiplies its columns
    of ``Y`` by its rows of ``B``; g adds the partial sums. The bias is
    replicated and added once, after g (added to every partial sum it would
    count ``t`` times); its gradient is the sum of ``dZ`` over the tokens.
    """

    def __init__(self, linear: Linear, region: Region, where: str) -> None:
        t = region.t
        rows = linear.weight.shape[0]
        self.name = linear.name
        self.ranks = t
        self.region = region
        self.where = where
        self.shards = [
            Linear(linear.name, own(linear.weight.value[r * rows // t : (r + 1) * rows // t]), None)
            for r in range(t)
        ]
        bias = linear.bias
        self.biases = [] if bias is None else [Param(bias.name, own(bias.value)) for _ in range(t)]

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        partial = per_rank(self.ranks, lambda r: self.shards[r].forward(xs[r])[0])
        summed = self.region.leave(partial, self.where)
        if not self.biases:
            return summed, list(xs)
        name = f"{self.name}.bias"
        ys = per_rank(self.ranks, lambda r: ops.add(summed[r], self.biases[r].value, name=name))
        return ys, list(xs)

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        grads = self.region.leave_backward(dys, self.where)
        outs = per_rank(self.ranks, lambda r: self.shards[r].backward_input(grads[r], ctx[r]))
        return [dx for dx, _ in outs], [(w, dy) for (_, w), dy in zip(outs, dys, strict=True)]

    def backward_weight(self, wctx: list[Any]) -> None:
        def weight(r: int) -> None:
            w, dy = wctx[r]
            self.shards[r].backward_weight(w)
            if self.biases:
                self.biases[r].accumulate(ops.sum_to_last(dy, name=f"{self.name}.db"))

        per_rank(self.ranks, weight)

    def params(self, rank: int) -> list[Param]:
        return [*self.shards[rank].parameters(), *self.biases[rank : rank + 1]]

    def full_params(self) -> dict[str, Array]:
        weight = self.shards[0].weight.name
        out = {weight: concat([s.weight.value for s in self.shards], 0)}
        if self.biases:
            out[self.biases[0].name] = self.biases[0].value
        return out


def check_divides(what: str, size: int, t: int, fix: str) -> None:
    """A one-line :class:`LayoutError` unless ``t`` divides ``size``."""
    if size % t:
        raise LayoutError(f"tp = {t} does not divide the {what} ({size}); {fix}")


def shard_block(block: Any, t: int, sequence_parallel: bool, overlap: bool = True) -> ParallelBlock:
    """The single-device ``block`` as a tensor-parallel group of ``t`` ranks runs it
    (``overlap``: see :class:`Region`)."""
    # the sharded models build on this module, so they are imported when first needed
    from .tensor_blocks import shard_mlp_block
    from .tensor_gpt import shard_gpt_block

    if isinstance(block, MLPBlock):
        return shard_mlp_block(block, t, sequence_parallel, overlap)
    sharded = shard_gpt_block(block, t, sequence_parallel, overlap)
    if sharded is None:
        raise LayoutError(
            f"tensor parallelism does not know how to split block {block.name!r} "
            f"({type(block).__name__}); use tp = 1 for this model"
        )
    return sharded
