"""Megatron-LM's column- and row-parallel GEMMs over a tensor-parallel group.

A transformer MLP's ``Y = act(X A)``, ``Z = Y B`` splits ``A`` by columns
and ``B`` by rows over ``t`` ranks (Shoeybi et al. 2019, sec. 3, fig. 3):
rank ``r`` computes ``Y_r = act(X A_r)`` on its own and ``Y_r B_r``, a
partial sum of ``Z``. :class:`ColumnParallel` enters the parallel region
through f, :class:`RowParallel` leaves it through g
(:mod:`.collectives`); attention splits the same way by heads.
"""

from __future__ import annotations

from typing import Any

from ... import ops
from ...errors import LayoutError
from ...nn.layers import Layer, Linear
from ...nn.param import Param
from ...ops.arrays import Array, concat
from ...ops.precision import linear_gemm_dtype
from ...ops.tape import new_handle
from .block import ParallelBlock
from .collectives import Region, per_rank, wait
from .pipelined import enter_backward_from, enter_into, leave_backward_into, leave_from


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
        def gemm(inputs: list[Array]) -> list[Any]:
            return per_rank(self.ranks, lambda r: self.shards[r].forward(inputs[r]))

        outs = enter_into(self.region, xs, self.where, gemm)
        if self.region.sequence_parallel:
            return [y for y, _ in outs], self._kept(xs)
        # what the shard keeps: the input itself, or its FP8 copy (ops.precision)
        return [y for y, _ in outs], [ctx for _, ctx in outs]

    def _kept(self, xs: list[Array]) -> list[Array]:
        """Under sequence parallelism, this rank's part of the input, as it arrived, or
        its FP8 copy when the linear layers run in FP8 (Transformer Engine keeps the
        FP8 copy of its part and all-gathers it again for the weight gradient)."""
        fp8 = linear_gemm_dtype()
        if fp8 is None or not isinstance(self.shards[0], Linear):
            return list(xs)
        return per_rank(self.ranks, lambda r: ops.cast(xs[r], fp8, name=f"{self.name}.cast"))

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        def gemm(grads: list[Array]) -> list[Any]:
            return per_rank(self.ranks, lambda r: self.shards[r].backward_input(grads[r], ctx[r]))

        dxs, outs = enter_backward_from(self.region, dys, self.where, gemm, _firsts)
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
        weight-gradient GEMM does (Transformer Engine's "bulk" overlap, which
        Megatron-Core's ``--tp-comm-overlap`` turns on too: :mod:`.pipelined`).
        Without either, one after the other.
        """
        if not (self.region.overlap or self.region.pipelined):
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
        def gemm(inputs: list[Array]) -> list[Any]:
            return per_rank(self.ranks, lambda r: self.shards[r].forward(inputs[r]))

        summed, outs = leave_from(self.region, xs, self.where, gemm, _firsts)
        kept = [ctx for _, ctx in outs]  # the input, or its FP8 copy (ops.precision)
        if not self.biases:
            return summed, kept
        name = f"{self.name}.bias"
        ys = per_rank(self.ranks, lambda r: ops.add(summed[r], self.biases[r].value, name=name))
        return ys, kept

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        def gemm(grads: list[Array]) -> list[Any]:
            return per_rank(self.ranks, lambda r: self.shards[r].backward_input(grads[r], ctx[r]))

        outs = leave_backward_into(self.region, dys, self.where, gemm)
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


def _firsts(outs: list[Any]) -> list[Array]:
    """The arrays of a layer's per-rank ``(array, context)`` results."""
    return [y for y, _ in outs]


def check_divides(what: str, size: int, t: int, fix: str) -> None:
    """A one-line :class:`LayoutError` unless ``t`` divides ``size``."""
    if size % t:
        raise LayoutError(f"tp = {t} does not divide the {what} ({size}); {fix}")
