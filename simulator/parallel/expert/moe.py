"""A mixture-of-experts layer over a tensor-parallel group of one expert-parallel rank.

Megatron-Core's layout (Shoeybi et al. 2019 for the tensor-parallel part;
Lepikhin et al. 2020, "GShard", sec. 2.2 and Megatron-Core's
``MoEAlltoAllTokenDispatcher`` for the expert-parallel part):

* **experts split over ``ep`` ranks**: rank ``j`` of an expert-parallel group
  holds experts ``j E/ep .. (j+1) E/ep - 1``; the router and the shared
  experts are replicated like every other weight;
* **dispatch**: every rank routes its own tokens, permutes them expert by
  expert, and an all-to-all sends each block of rows to the rank of its
  experts (:mod:`.exchange`); the receiver sorts what arrived by expert
  (Megatron-Core's ``sort_chunks_by_idxs``) and runs its experts as grouped
  GEMMs; **combine**: the outputs go back the same way, and every rank weights
  its tokens' rows by their gates and adds them up. Backward, the gradients
  take the two all-to-alls in the other order;
* **tensor parallelism inside** (``expert_tp = tp``, Megatron-Core's default
  ``expert_tensor_parallel_size``): the MoE sits between f and g like the
  dense MLP. Every tensor-parallel rank holds the whole micro-batch after f
  (all-gathered under sequence parallelism), routes it the same way (the
  router is replicated), and holds its ``1/t`` of every expert's columns
  (fc1, SwiGLU's gate and value alike) and rows (fc2); its expert outputs
  are partial sums, added by g after the gates weighted them. The gates'
  gradients, dot products over the hidden axis, are partial sums too: one
  all-reduce of ``N k`` numbers per layer adds them, so that the router gets
  the same gradient on every rank. The router's input gradient, the same on
  every rank, is added by rank 0 only, since f's backward sums over ranks.
  An expert tensor-parallel size other than ``tp`` is not modelled.

With ``overlap_shared`` the shared experts compute while the all-to-alls are
under way (Megatron-Core's ``moe_shared_expert_overlap``): their first GEMM
and activation during the dispatch, their second GEMM during the combine,
and the other way round in backward.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ...nn.context import collecting_reports
from ...nn.experts import (
    combine,
    combine_backward,
    dispatch,
    experts_backward_input,
    experts_backward_weight,
    experts_forward,
    undispatch,
)
from ...nn.layers import Layer, Linear
from ...nn.moe import MoE
from ...nn.param import Param
from ...nn.routing import Routed, route, route_backward, route_weight
from ...ops import add
from ...ops import moe as ops_moe
from ...ops.arrays import Array, ShapeArray, concat, dtype_of, is_shape_only
from ...ops.tape import on_rank
from ..tensor.block import ParallelBlock
from ..tensor.collectives import Region, collective, per_rank
from ..tensor.grouped import gated_columns
from ..tensor.linear import own
from .exchange import receive, send


def _columns(width: int, t: int, gated: bool) -> list[np.ndarray]:
    """Rank by rank, its columns of an expert's first weight (module docstring)."""
    if gated:
        return gated_columns(width, t)
    return [np.arange(r * width // t, (r + 1) * width // t) for r in range(t)]


def _cut(x: Array, index: tuple) -> Array:
    """A copy of ``x[index]``; ``index`` picks rows by a slice or columns by indices."""
    if not is_shape_only(x):
        return own(x[index])
    shape = list(x.shape)
    for axis, key in enumerate(index):
        shape[axis] = len(range(*key.indices(shape[axis]))) if isinstance(key, slice) else len(key)
    return ShapeArray(shape, dtype_of(x))


class ExpertParallelMoE(ParallelBlock):
    """The layer of the module docstring: ``moe`` on ``t`` tensor-parallel ranks of
    expert-parallel rank ``ep_rank`` of ``ep``, between the f and g of ``region``."""

    def __init__(
        self, moe: MoE, region: Region, ep: int, ep_rank: int, overlap_shared: bool = False
    ) -> None:
        spec = moe.spec
        t = region.t
        self.name, self.spec, self.region, self.ranks = moe.name, spec, region, t
        self.ep, self.ep_rank = ep, ep_rank
        per = spec.router.experts // ep
        self.local = range(ep_rank * per, (ep_rank + 1) * per)
        self.overlap_shared = overlap_shared and moe.shared is not None and ep > 1
        self.routers = [Param(moe.router.name, own(moe.router.value)) for _ in range(t)]
        self.columns = _columns(spec.fc1_width, t, spec.gated)
        rows = [slice(r * spec.ffn // t, (r + 1) * spec.ffn // t) for r in range(t)]
        experts = [moe.experts[e] for e in self.local]
        self.fc1 = [
            [Param(x.fc1.name, _cut(x.fc1.value, (slice(None), self.columns[r]))) for x in experts]
            for r in range(t)
        ]
        self.fc2 = [
            [Param(x.fc2.name, _cut(x.fc2.value, (rows[r],))) for x in experts] for r in range(t)
        ]
        self.shared: list[list[Layer]] | None = None
        if moe.shared is not None:
            fc1, act, fc2 = moe.shared.layers
            width = fc1.weight.shape[1]
            cols = _columns(width, t, spec.gated)
            inner = fc2.weight.shape[0]
            self.shared = [
                [
                    Linear(fc1.name, _cut(fc1.weight.value, (slice(None), cols[r])), None),
                    act,
                    Linear(
                        fc2.name,
                        _cut(fc2.weight.value, (slice(r * inner // t, (r + 1) * inner // t),)),
                        None,
                    ),
                ]
                for r in range(t)
            ]
        self._shared_widths = (
            None
            if moe.shared is None
            else (moe.shared.layers[0].weight.shape[1], moe.shared.layers[2].weight.shape[0])
        )

    # -- the pieces -------------------------------------------------------------------
    def _route(self, tokens: list[Array]) -> tuple[list[Routed], list[Any]]:
        routed, ctxs = [], []
        for r in range(self.ranks):
            # every rank routes the same tokens alike: the loss is counted once
            quiet = contextlib.nullcontext() if r == 0 else collecting_reports(None)
            with on_rank(r), quiet:
                one, ctx = route(self.spec.router, self.routers[r].value, tokens[r], self.name)
            routed.append(one)
            ctxs.append(ctx)
        return routed, ctxs

    def _splits(self, routed: Routed) -> list[int]:
        """Rows for each rank of the expert-parallel group: its experts' blocks."""
        per = len(self.local)
        return [sum(routed.sizes[j * per : (j + 1) * per]) for j in range(self.ep)]

    def _sorted(self, counts: list[list[int]], numeric: bool) -> tuple[list[int], Any, Any]:
        """What arrived, source by source and expert by expert inside each, as the rows
        of the experts in turn: the experts' sizes, the gather that sorts and the one
        that undoes it (shape-only: row counts)."""
        mine = [[c[e] for e in self.local] for c in counts]
        experts = range(len(self.local))
        sizes = [sum(src[i] for src in mine) for i in experts]
        if not numeric:
            return sizes, sum(sizes), sum(sizes)
        starts = np.cumsum([0, *(n for src in mine for n in src)])[:-1].reshape(len(mine), -1)
        blocks = [
            np.arange(starts[s, i], starts[s, i] + mine[s][i])
            for i in experts
            for s in range(len(mine))
        ]
        order = np.concatenate(blocks).astype(np.int64)
        return sizes, order, np.argsort(order, kind="stable")

    def _shared_part(self, r: int, part: int, x: Array) -> tuple[Array, Any]:
        """Rank ``r``'s shared experts: ``part`` 0 is fc1 and the activation, 1 is fc2."""
        assert self.shared is not None
        layers = self.shared[r][:2] if part == 0 else self.shared[r][2:]
        ctxs = []
        with on_rank(r):
            for layer in layers:
                x, c = layer.forward(x)
                ctxs.append(c)
        return x, ctxs

    def _shared_part_backward(self, r: int, part: int, dy: Array, ctxs: Any) -> tuple[Array, Any]:
        assert self.shared is not None
        layers = self.shared[r][:2] if part == 0 else self.shared[r][2:]
        wctxs: list[Any] = [None] * len(layers)
        with on_rank(r):
            for i in reversed(range(len(layers))):
                dy, wctxs[i] = layers[i].backward_input(dy, ctxs[i])
        return dy, wctxs

    # -- forward ------------------------------------------------------------------------
    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        t, name, spec = self.ranks, self.name, self.spec
        full = self.region.enter(xs, name) if t > 1 else list(xs)
        b, s, h = full[0].shape
        tokens = [x.reshape(b * s, h) for x in full]
        numeric = not is_shape_only(tokens[0])
        routed, rctx = self._route(tokens)
        first = routed[0]
        rows = per_rank(t, lambda r: dispatch(tokens[r], routed[r], name))
        hidden: list[Any] = [None] * t  # the shared experts' activations (overlapped)
        sctx: list[list[Any]] = [[] for _ in range(t)]
        sizes, order, undo, splits, back = first.sizes, None, None, [], []
        if self.ep > 1:
            splits = self._splits(first)
            mine = splits[self.ep_rank]
            item = send(
                f"dispatch: all-to-all ({name})",
                rows,
                splits,
                list(first.sizes),
                None if numeric else self._expected(rows, self.ep * mine, [first.sizes] * self.ep),
                self.overlap_shared,
            )
            if self.overlap_shared:
                hidden = self._shared_forward(0, tokens, sctx)
            received, counts = receive(item)
            sizes, order, undo = self._sorted(counts, numeric)
            back = [sum(c[e] for e in self.local) for c in counts]
            rows = per_rank(t, lambda r: ops_moe.gather_rows(received[r], order, f"{name}.sort"))
        ys, ectx = _pairs(
            per_rank(
                t,
                lambda r: experts_forward(
                    rows[r], sizes, self.fc1[r], self.fc2[r], spec.gated, f"{name}.experts"
                ),
            )
        )
        if self.ep > 1:
            ys = per_rank(t, lambda r: ops_moe.gather_rows(ys[r], undo, f"{name}.unsort"))
            n_rows = sum(first.sizes)
            item = send(
                f"combine: all-to-all ({name})",
                ys,
                back,
                [],
                None if numeric else self._expected(ys, n_rows, []),
                self.overlap_shared,
            )
            if self.overlap_shared:
                hidden = self._shared_forward(1, hidden, sctx)
            ys, _ = receive(item)
        outs, cctx = _pairs(per_rank(t, lambda r: combine(ys[r], routed[r], name)))
        if self.shared is not None:
            if not self.overlap_shared:
                hidden = self._shared_forward(1, self._shared_forward(0, tokens, sctx), sctx)
            outs = per_rank(t, lambda r: add(outs[r], hidden[r], name=f"{name}.shared.add"))
        out = [o.reshape(b, s, h) for o in outs]
        if t > 1:
            out = self.region.leave(out, name)
        meta = (b, s, h, order, undo, splits, back)
        return out, [(rctx[r], ectx[r], cctx[r], sctx[r], meta) for r in range(t)]

    def _expected(self, like: list[Array], rows: int, counts: list[list[int]]) -> Any:
        """What a shape-only exchange delivers: ``rows`` rows per tensor-parallel rank."""
        width = like[0].shape[1:]
        return [ShapeArray((rows, *width), dtype_of(x)) for x in like], counts

    def _shared_forward(self, part: int, xs: list[Array], ctxs: list[list[Any]]) -> list[Array]:
        out = []
        for r in range(self.ranks):
            y, c = self._shared_part(r, part, xs[r])
            ctxs[r].append(c)
            out.append(y)
        return out

    # -- backward -----------------------------------------------------------------------
    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        t, name, spec = self.ranks, self.name, self.spec
        b, s, h, order, undo, splits, back = ctx[0][4]
        full = self.region.leave_backward(dys, name) if t > 1 else list(dys)
        douts = [d.reshape(b * s, h) for d in full]
        numeric = not is_shape_only(douts[0])
        routed = [c[2][1] for c in ctx]
        first = routed[0]
        drows, dgates = _pairs(per_rank(t, lambda r: combine_backward(douts[r], ctx[r][2], name)))
        if t > 1:
            dgates = collective("all_reduce", dgates, f"all-reduce gate grads ({name})")
        swctx: list[list[Any]] = [[None, None] for _ in range(t)]
        dhidden: list[Any] = [None] * t
        if self.ep > 1:
            mine = splits[self.ep_rank]
            item = send(
                f"combine dy: all-to-all ({name})",
                drows,
                splits,
                list(first.sizes),
                None if numeric else self._expected(drows, self.ep * mine, []),
                self.overlap_shared,
            )
            if self.overlap_shared:
                dhidden = self._shared_backward(1, douts, ctx, swctx)
            received, _ = receive(item)
            drows = per_rank(
                t, lambda r: ops_moe.gather_rows(received[r], order, f"{name}.sort.dx")
            )
        dxs, ewctx = _pairs(
            per_rank(
                t,
                lambda r: experts_backward_input(
                    drows[r], ctx[r][1], self.fc1[r], self.fc2[r], spec.gated, f"{name}.experts"
                ),
            )
        )
        dtokens: list[Any] = [None] * t
        if self.ep > 1:
            dxs = per_rank(t, lambda r: ops_moe.gather_rows(dxs[r], undo, f"{name}.unsort.dx"))
            item = send(
                f"dispatch dx: all-to-all ({name})",
                dxs,
                back,
                [],
                None if numeric else self._expected(dxs, sum(first.sizes), []),
                self.overlap_shared,
            )
            if self.overlap_shared:
                dtokens = self._shared_backward(0, dhidden, ctx, swctx)
            dxs, _ = receive(item)
        dx = per_rank(t, lambda r: undispatch(dxs[r], routed[r], name))
        rwctx = []
        for r in range(t):
            with on_rank(r):
                # the router's input gradient is the same on every rank: f's backward adds
                # the ranks' gradients, so rank 0 alone contributes it
                dxr, w = route_backward(
                    spec.router, self.routers[r].value, dgates[r], ctx[r][0], name, r == 0
                )
                if dxr is not None:
                    dx[r] = add(dx[r], dxr, name=f"{name}.router.dx.add")
            rwctx.append(w)
        if self.shared is not None:
            if not self.overlap_shared:
                dtokens = self._shared_backward(
                    0, self._shared_backward(1, douts, ctx, swctx), ctx, swctx
                )
            dx = per_rank(t, lambda r: add(dx[r], dtokens[r], name=f"{name}.shared.dx.add"))
        out = [d.reshape(b, s, h) for d in dx]
        if t > 1:
            out = self.region.enter_backward(out, name)
        return out, [(rwctx[r], ewctx[r], swctx[r]) for r in range(t)]

    def _shared_backward(
        self, part: int, dys: list[Array], ctx: list[Any], wctxs: list[list[Any]]
    ) -> list[Array]:
        out = []
        for r in range(self.ranks):
            dx, w = self._shared_part_backward(r, part, dys[r], ctx[r][3][part])
            wctxs[r][part] = w
            out.append(dx)
        return out

    def backward_weight(self, wctx: list[Any]) -> None:
        name = self.name
        for r in range(self.ranks):
            rw, ew, sw = wctx[r]
            with on_rank(r):
                self.routers[r].accumulate(route_weight(rw, name))
                experts_backward_weight(ew, self.fc1[r], self.fc2[r], f"{name}.experts")
                if self.shared is not None:
                    for part, layers in ((0, self.shared[r][:2]), (1, self.shared[r][2:])):
                        for layer, w in zip(layers, sw[part], strict=True):
                            layer.backward_weight(w)

    # -- bookkeeping --------------------------------------------------------------------
    def params(self, rank: int) -> list[Param]:
        shared = (
            []
            if self.shared is None
            else [*self.shared[rank][0].parameters(), *self.shared[rank][2].parameters()]
        )
        return [self.routers[rank], *self.fc1[rank], *self.fc2[rank], *shared]

    def expert_params(self, rank: int) -> list[Param]:
        """The experts' weights, which only this expert-parallel rank holds."""
        return [*self.fc1[rank], *self.fc2[rank]]

    def full_params(self) -> dict[str, Array]:
        out = {self.routers[0].name: self.routers[0].value}
        for i in range(len(self.local)):
            out[self.fc1[0][i].name] = self._joined([p[i] for p in self.fc1], self.columns)
            out[self.fc2[0][i].name] = concat([p[i].value for p in self.fc2], 0)
        if self.shared is not None and self._shared_widths is not None:
            width, _ = self._shared_widths
            cols = _columns(width, self.ranks, self.spec.gated)
            fc1 = [layers[0].weight for layers in self.shared]
            out[fc1[0].name] = self._joined(fc1, cols)
            fc2 = [layers[2].weight for layers in self.shared]
            out[fc2[0].name] = concat([p.value for p in fc2], 0)
        return out

    @staticmethod
    def _joined(shards: list[Param], columns: list[np.ndarray]) -> Array:
        """The single-device weight from its column shards."""
        first = shards[0].value
        width = sum(len(c) for c in columns)
        if is_shape_only(first):
            return ShapeArray((first.shape[0], width), dtype_of(first))
        whole = np.zeros((first.shape[0], width), dtype=first.dtype)
        for p, cols in zip(shards, columns, strict=True):
            whole[:, cols] = p.value
        return whole


def _pairs(results: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """``[(a, b), ...]`` -> ``([a, ...], [b, ...])``."""
    return [a for a, _ in results], [b for _, b in results]
