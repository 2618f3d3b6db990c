"""All-gather context parallelism: every rank gathers all keys and values, attends its queries.

The Llama 3 Herd of Models (Llama Team 2024, sec. 3.3.2): "we first
all-gather the K and V tensors, and then compute attention output for the
local Q tensor chunk", with the sequence cut into ``2 cp`` chunks for balance
(:mod:`.layout`). The all-gather moves ``(cp - 1)/cp`` of the whole keys and
values into every rank, ``2 b (s/cp) kv d`` elements from each other rank,
and nothing overlaps it: the paper accepts the exposed all-gather because
with grouped-query attention the keys and values are much smaller than the
queries. Each of the rank's chunks of queries (at positions ``a .. a + n``)
then attends to the keys up to its own, ``0 .. a + n``, one kernel per
chunk.

The backward gathers the keys and values again (only the rank's own are
kept: they are ``1/cp`` of the gathered ones), computes the gradients of
every key and value its queries saw, and reduce-scatters them over the
group, each rank receiving the sum for its own keys and values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...nn.blockwise import attend_block, attend_block_backward
from ...ops.arrays import Array, concat, is_shape_only
from ...ops.attention import row_dot
from ..tensor.collectives import per_rank
from .exchange import collect_kv, copy_kernel, exchange, pack_kv, unpack_kv

if TYPE_CHECKING:
    from .attention import ContextParallelAttention


def _runs(att: ContextParallelAttention, i: int) -> list[tuple[slice, int, int]]:
    """Rank ``i``'s chunks: their rows in its arrays, first position and length."""
    out, row = [], 0
    for start, n in att.spans(i):
        out.append((slice(row, row + n), start, n))
        row += n
    return out


def _joined(parts: list[Array], axis: int) -> Array:
    """Chunks' results side by side along the sequence ``axis`` (each kernel writes its
    rows of one output: no copy)."""
    return parts[0] if len(parts) == 1 else concat(parts, axis=axis)


class AllGather:
    """All-gather context parallelism (module docstring)."""

    @staticmethod
    def gather(att: ContextParallelAttention, kvs: list[Array], what: str) -> list[Array]:
        """Every rank's packed keys and values, gathered over its group and put back in
        sequence order (one copy kernel: the gathered chunks arrive rank by rank)."""
        t, cp, layout = att.t, att.cp, att.layout
        gathered = exchange("all_gather", kvs, t, f"cp: all-gather {what} ({att.where})")

        def ordered(i: int) -> Array:
            g = gathered[i]
            b, kv, _, local, d = kvs[i].shape
            shape = (b, kv, 2, cp * local, d)
            if is_shape_only(g):
                return copy_kernel(f"{att.name}.kv.order", shape, g)
            whole = g.reshape(cp, b, kv, 2, local, d).transpose(1, 2, 3, 0, 4, 5).reshape(shape)
            return copy_kernel(f"{att.name}.kv.order", whole[..., layout.inverse, :], g)

        return per_rank(att.ranks, ordered)

    def forward(self, att: ContextParallelAttention, xs: list[Array]) -> tuple[list, list]:
        n, cores = att.ranks, att.cores
        qkv = per_rank(n, lambda i: cores[i].split(xs[i]))
        kvs = per_rank(n, lambda i: pack_kv(qkv[i][1], qkv[i][2], f"{att.name}.kv"))
        wholes = self.gather(att, kvs, "K,V")

        def attend(i: int) -> tuple[Array, Array, list[Any]]:
            q = qkv[i][0]
            k, v = unpack_kv(wholes[i])
            outs, lses, kept = [], [], []
            for rows, start, m in _runs(att, i):
                end = start + m
                out, lse, block = attend_block(
                    cores[i], q[..., rows, :], k[..., :end, :], v[..., :end, :],
                    ((start, m),), ((0, end),), att.seq_len,
                )  # fmt: skip
                outs.append(out)
                lses.append(lse)
                kept.append(block)
            return _joined(outs, -2), _joined(lses, -1), kept

        results = per_rank(n, attend)
        ys = per_rank(n, lambda i: cores[i].merge(results[i][0]))
        ctx = [(*qkv[i], ys[i], results[i][1], results[i][2]) for i in range(n)]
        return ys, ctx

    def backward(self, att: ContextParallelAttention, dys: list[Array], ctx: list) -> list:
        n, cores, name = att.ranks, att.cores, att.name
        douts = [cores[i].heads_of(dys[i]) for i in range(n)]
        outs = [cores[i].heads_of(ctx[i][3]) for i in range(n)]
        rows_of = (
            [None] * n if cores[0].flash else per_rank(n, lambda i: row_dot(douts[i], outs[i]))
        )
        kvs = per_rank(n, lambda i: pack_kv(ctx[i][1], ctx[i][2], f"{name}.kv"))
        wholes = self.gather(att, kvs, "K,V again")

        def grads(i: int) -> tuple[Array, Array]:
            q, _, _, _, lse, kept = ctx[i]
            k, v = unpack_kv(wholes[i])
            dqs, dkv = [], None
            for (rows, start, m), block in zip(_runs(att, i), kept, strict=True):
                end = start + m
                rowsum = None if rows_of[i] is None else rows_of[i][..., rows]
                dq, dk, dv = attend_block_backward(
                    cores[i], douts[i][..., rows, :], q[..., rows, :], k[..., :end, :],
                    v[..., :end, :], outs[i][..., rows, :], lse[..., rows], rowsum, block,
                    ((start, m),), ((0, end),), att.seq_len,
                )  # fmt: skip
                dqs.append(dq)
                dkv = collect_kv(dkv, (slice(0, end), dk, dv), wholes[i], f"{name}.dkv")
            return _joined(dqs, -2), self._by_rank(att, i, dkv)

        parts = per_rank(n, grads)
        label = f"cp: reduce-scatter dK,dV ({att.where})"
        mine = exchange("reduce_scatter", [dkv for _, dkv in parts], att.t, label)

        def gradient(i: int) -> Array:
            local = kvs[i].shape
            dk, dv = unpack_kv(mine[i].reshape(local))
            return cores[i].unrotate(parts[i][0], dk, dv)

        return per_rank(n, gradient)

    @staticmethod
    def _by_rank(att: ContextParallelAttention, i: int, dkv: Array) -> Array:
        """Gradients of every key and value in sequence order -> rank by rank, as the
        reduce-scatter hands out its parts (one copy kernel)."""
        b, kv, _, s, d = dkv.shape
        cp = att.cp
        shape = (cp * b * kv * 2 * (s // cp) * d,)
        if is_shape_only(dkv):
            return copy_kernel(f"{att.name}.dkv.order", shape, dkv)
        ordered = dkv[..., att.layout.order, :].reshape(b, kv, 2, cp, s // cp, d)
        flat = np.ascontiguousarray(ordered.transpose(3, 0, 1, 2, 4, 5)).reshape(shape)
        return copy_kernel(f"{att.name}.dkv.order", flat, dkv)
