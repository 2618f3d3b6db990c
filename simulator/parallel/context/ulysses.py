"""DeepSpeed-Ulysses: an all-to-all from the sequence split to a split of the heads, and back.

Jacobs et al. 2023, "DeepSpeed Ulysses: System Optimizations for Enabling
Training of Extreme Long Sequence Transformer Models" (sec. 3.1, fig. 2).
Every rank holds its tokens of every head; an all-to-all over the
context-parallel group hands each rank every token of ``1/cp`` of the heads,
so attention runs on whole sequences, with the single-device kernels, and
another all-to-all returns the outputs to the sequence split. Forward moves
the queries, keys, values and the output, backward their gradients: eight
all-to-alls per layer, each rank sending ``(cp - 1)/cp`` of the tensor it
holds. Attention needs no balancing here (every rank attends whole
sequences), and the all-to-alls are not overlapped with anything.

Rank ``j`` of the group takes the ``j``-th ``1/cp`` of its tensor-parallel
rank's query heads and the key-value heads they read. With grouped-query
attention that is ``kv/cp`` whole groups when ``cp`` divides the key-value
heads ``kv``; when ``kv`` divides ``cp`` instead, each key-value head goes to
the ``cp/kv`` ranks that share its group's queries (repeated before the
all-to-all, which then moves more, and its gradient summed over them after
the backward's), as tensor parallelism repeats them
(:mod:`simulator.parallel.tensor.grouped`).

The rank keeps its heads' queries, keys, values, output and softmax
statistics for backward, as TransformerEngine's all-to-all attention does,
besides the output in the sequence split that the output projection keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ...nn.attention import AttentionCore
from ...ops.arrays import Array, is_shape_only
from ...ops.attention import sum_groups
from ..tensor.collectives import per_rank
from .exchange import copy_kernel, exchange

if TYPE_CHECKING:
    from .attention import ContextParallelAttention


def _heads_core(core: AttentionCore, cp: int, j: int) -> AttentionCore:
    """The core of rank ``j``'s ``1/cp`` of ``core``'s heads over the whole sequence,
    its queries and keys already rotated, with those heads' window of the dropout."""
    per = core.heads // cp
    kv = core.kv_heads // cp if core.kv_heads % cp == 0 else 1
    sub = AttentionCore(
        core.name,
        per,
        core.head_dim,
        core.dropout.sliced((slice(j * per, (j + 1) * per),), (core.heads,)),
        core.selective,
        kv_heads=kv,
        rotary=None,
        kernel=core.kernel,
    )
    return sub


def _blocks(x: Array, cp: int, repeat: bool) -> tuple[Any, tuple[int, ...]]:
    """``(b, kv, G, n, d)`` -> the ``cp`` blocks the ranks receive, ``(cp, b, kv', G', n,
    d)``: ``kv/cp`` groups each, or, when the groups are fewer than the ranks, one group
    and ``1/(cp/kv)`` of its ``G`` heads each (``repeat``: all ``G`` of them, the group
    repeated on its ``cp/kv`` ranks)."""
    b, kv, g, n, d = x.shape
    if kv % cp == 0:
        shape = (cp, b, kv // cp, g, n, d)
        if is_shape_only(x):
            return shape, shape
        return x.reshape(b, cp, kv // cp, g, n, d).transpose(1, 0, 2, 3, 4, 5), shape
    r = cp // kv
    if repeat:
        shape = (cp, b, 1, g, n, d)
        if is_shape_only(x):
            return shape, shape
        wide = np.broadcast_to(x[:, :, None], (b, kv, r, g, n, d))
        return wide.transpose(1, 2, 0, 3, 4, 5).reshape(shape), shape
    shape = (cp, b, 1, g // r, n, d)
    if is_shape_only(x):
        return shape, shape
    return x.reshape(b, kv, r, g // r, n, d).transpose(1, 2, 0, 3, 4, 5).reshape(shape), shape


def _unblocks(x: Array, cp: int, kv: int, name: str, summed: bool) -> Array:
    """The inverse of :func:`_blocks` on what the ranks sent back, ``(cp, b, kv', G', n,
    d)`` -> ``(b, kv, G, n, d)``; ``summed``: the parts of a repeated group are added
    (one kernel: the gradients of its repeats), else laid out in order (a copy)."""
    _, b, _, gj, n, d = x.shape
    if kv % cp == 0:
        if is_shape_only(x):
            return copy_kernel(f"{name}.order", (b, kv, gj, n, d), x)
        return copy_kernel(
            f"{name}.order", x.transpose(1, 0, 2, 3, 4, 5).reshape(b, kv, gj, n, d), x
        )
    r = cp // kv
    parts = x.reshape(kv, r, b, gj, n, d)
    if not is_shape_only(x):
        parts = parts.transpose(2, 0, 1, 3, 4, 5)
    if summed:  # gj == 1: the r repeats of a group side by side, then added
        return sum_groups(parts.reshape(b, kv, r, n, d), name)
    if is_shape_only(x):
        return copy_kernel(f"{name}.order", (b, kv, r * gj, n, d), x)
    return copy_kernel(f"{name}.order", parts.reshape(b, kv, r * gj, n, d), x)


class Ulysses:
    """DeepSpeed-Ulysses (module docstring)."""

    def _to_heads(
        self, att: ContextParallelAttention, xs: list[Array], what: str, repeat: bool
    ) -> list[Array]:
        """Sequence split -> heads split: pack, all-to-all, put the tokens in order."""
        cp, layout, name = att.cp, att.layout, att.name
        packed = per_rank(att.ranks, lambda i: self._pack(name, xs[i], cp, repeat))
        moved = exchange("all_to_all", packed, att.t, f"cp: all-to-all {what} ({att.where})")

        def ordered(i: int) -> Array:
            _, b, kvj, gj, n, d = _blocks(xs[i], cp, repeat)[1]
            shape = (b, kvj, gj, cp * n, d)
            got = moved[i]
            if is_shape_only(got):
                return copy_kernel(f"{name}.a2a.order", shape, got)
            whole = got.reshape(cp, b, kvj, gj, n, d).transpose(1, 2, 3, 0, 4, 5).reshape(shape)
            return copy_kernel(f"{name}.a2a.order", whole[..., layout.inverse, :], got)

        return per_rank(att.ranks, ordered)

    @staticmethod
    def _pack(name: str, x: Array, cp: int, repeat: bool) -> Array:
        blocks, shape = _blocks(x, cp, repeat)
        out = shape if is_shape_only(x) else np.ascontiguousarray(blocks).reshape(-1)
        return copy_kernel(f"{name}.a2a.pack", out, x)

    def _to_sequence(
        self, att: ContextParallelAttention, xs: list[Array], what: str, kv: list[int], summed: bool
    ) -> list[Array]:
        """Heads split -> sequence split: each rank's tokens back to it, all-to-all, the
        heads in order (repeated groups summed when ``summed``)."""
        cp, layout, name = att.cp, att.layout, att.name

        def pack(i: int) -> Array:
            x = xs[i]
            b, kvj, gj, s, d = x.shape
            shape = (cp, b, kvj, gj, s // cp, d)
            if is_shape_only(x):
                return copy_kernel(f"{name}.a2a.pack", shape, x)
            mine = x[..., layout.order, :].reshape(b, kvj, gj, cp, s // cp, d)
            blocks = np.ascontiguousarray(mine.transpose(3, 0, 1, 2, 4, 5)).reshape(-1)
            return copy_kernel(f"{name}.a2a.pack", blocks, x)

        packed = per_rank(att.ranks, pack)
        moved = exchange("all_to_all", packed, att.t, f"cp: all-to-all {what} ({att.where})")

        def back(i: int) -> Array:
            b, kvj, gj, s, d = xs[i].shape
            got = moved[i].reshape(cp, b, kvj, gj, s // cp, d)
            return _unblocks(got, cp, kv[i], f"{name}.{what}", summed)

        return per_rank(att.ranks, back)

    def forward(self, att: ContextParallelAttention, xs: list[Array]) -> tuple[list, list]:
        n, t, cp, cores = att.ranks, att.t, att.cp, att.cores
        qkv = per_rank(n, lambda i: cores[i].split(xs[i]))
        q = self._to_heads(att, [x[0] for x in qkv], "q", repeat=False)
        k = self._to_heads(att, [x[1] for x in qkv], "k", repeat=True)
        v = self._to_heads(att, [x[2] for x in qkv], "v", repeat=True)
        subs = [_heads_core(cores[i], cp, i // t) for i in range(n)]
        outs = per_rank(n, lambda i: subs[i].attend(q[i], k[i], v[i]))
        kv = [core.kv_heads for core in cores]
        local = self._to_sequence(att, [out for out, _ in outs], "out", kv, summed=False)
        ys = per_rank(n, lambda i: cores[i].merge(local[i]))
        return ys, [(subs[i], outs[i][1]) for i in range(n)]

    def backward(self, att: ContextParallelAttention, dys: list[Array], ctx: list) -> list:
        n, cores = att.ranks, att.cores
        douts = self._to_heads(att, [cores[i].heads_of(dys[i]) for i in range(n)], "dout", False)
        grads = per_rank(n, lambda i: ctx[i][0].attend_backward(douts[i], ctx[i][1]))
        kv = [core.kv_heads for core in cores]
        dq = self._to_sequence(att, [g[0] for g in grads], "dq", kv, summed=False)
        dk = self._to_sequence(att, [g[1] for g in grads], "dk", kv, summed=True)
        dv = self._to_sequence(att, [g[2] for g in grads], "dv", kv, summed=True)
        return per_rank(n, lambda i: cores[i].unrotate(dq[i], dk[i], dv[i]))
