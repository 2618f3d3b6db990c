"""Column-parallel GEMMs whose shards are not one block of columns: GQA's QKV and SwiGLU's fc1.

Megatron-Core splits every column-parallel weight into ``t`` equal blocks of
columns. Two weights of the Llama block need their columns chosen with care
(Megatron-Core's ``SelfAttention`` and ``MLP`` with ``gated_linear_unit``):

* **grouped-query QKV** (:mod:`simulator.ops.attention` lays it out group by
  group: ``g = heads / kv_heads`` query heads, then the group's key and value).
  Rank ``r`` takes ``heads / t`` query heads and the key and value heads they
  read. When ``t`` divides ``kv_heads`` those are ``kv_heads / t`` whole
  groups, one block of columns. When ``kv_heads`` divides ``t`` instead, each
  key and value head is *replicated* on ``t / kv_heads`` ranks, each of which
  takes its share of the group's query heads (as vLLM and Hugging Face's
  tensor parallelism replicate them; Megatron-Core's attention asks ``t`` to
  divide the key-value heads). Forward, every replica computes the
  same keys and values from the same input; backward, each has the gradient
  of its own queries only, so the replicas' key and value weight gradients are
  partial sums, added over the replicas (an all-reduce inside each group of
  ``t / kv_heads`` ranks) before they are used. The input gradient needs
  nothing new: f's all-reduce adds every rank's ``dq W_q^T + dk W_k^T + dv
  W_v^T``, and the replicas' ``dk`` add up to the group's. The replicas
  repeat the key and value GEMMs: the hardware does them on every replica
  (hardware FLOPs), the model's formula counts them once (model FLOPs, MFU).
* **SwiGLU's fc1** computes the gate and the value together, ``[gate | up]``
  (``2f`` columns). Rank ``r`` takes columns ``r f/t .. (r+1) f/t`` of each
  half, so that its SwiGLU pairs its own gates with its own values: the two
  input projections are each column-parallel, and fc2 is row-parallel.

:class:`PickedColumns` is a column-parallel GEMM whose rank ``r`` holds the
columns ``columns[r]``; :func:`qkv_columns` and :func:`gated_columns` choose
them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...errors import LayoutError
from ...nn.attention import AttentionCore
from ...nn.layers import Linear
from ...nn.param import Param
from ...ops.arrays import Array, ShapeArray, concat, dtype_of, is_shape_only, like
from .collectives import Region, in_groups
from .linear import ColumnParallel, check_divides


def kv_replicas(core: AttentionCore, t: int) -> int:
    """How many ranks hold each of the core's key and value heads (1: ``t`` splits
    them); a one-line :class:`LayoutError` when neither divides the other."""
    heads, kv_heads = core.heads, core.kv_heads
    check_divides(
        "attention heads",
        heads,
        t,
        f"choose tp among the divisors of heads = {heads} (hidden = {heads * core.head_dim} "
        f"is split by whole heads)",
    )
    if kv_heads % t == 0:
        return 1
    if t % kv_heads == 0:
        return t // kv_heads
    raise LayoutError(
        f"tp = {t} and kv_heads = {kv_heads}: tp must divide kv_heads (each rank holds "
        f"kv_heads/tp key-value heads) or kv_heads must divide tp (each key-value head is "
        f"replicated on tp/kv_heads ranks); choose tp among the divisors or multiples of "
        f"{kv_heads} that divide heads = {heads}"
    )


def qkv_columns(core: AttentionCore, t: int) -> list[np.ndarray]:
    """Rank by rank, the QKV columns of its query heads and of the key and value heads
    they read (module docstring)."""
    kv, g, d = core.kv_heads, core.group, core.head_dim
    width = (g + 2) * d  # one group's columns
    replicas = kv_replicas(core, t)
    out = []
    for r in range(t):
        if replicas == 1:
            per = kv // t
            out.append(np.arange(r * per * width, (r + 1) * per * width))
            continue
        group, share = divmod(r, replicas)
        per = g // replicas
        base = group * width
        queries = np.arange(base + share * per * d, base + (share + 1) * per * d)
        out.append(np.concatenate([queries, np.arange(base + g * d, base + width)]))
    return out


def core_shard(core: AttentionCore, t: int, r: int) -> AttentionCore:
    """Rank ``r``'s attention core: its ``heads / t`` query heads over the key and
    value heads it holds, with its heads' window of the dropout mask."""
    replicas = kv_replicas(core, t)
    per = core.heads // t
    shard = AttentionCore(
        core.name,
        per,
        core.head_dim,
        core.dropout.sliced((slice(r * per, (r + 1) * per),), (core.heads,)),
        core.selective,
        kv_heads=1 if replicas > 1 else core.kv_heads // t,
        rotary=core.rotary,
        kernel=core.kernel,
    )
    shard.first = core.first
    return shard


def gated_columns(width: int, t: int) -> list[np.ndarray]:
    """Rank by rank, its columns of each half of a ``[gate | up]`` weight of ``width``
    columns (module docstring)."""
    f = width // 2
    check_divides("SwiGLU inner size", f, t, f"choose tp among the divisors of ffn_hidden = {f}")
    return [
        np.concatenate([np.arange(r * f // t, (r + 1) * f // t) + half * f for half in (0, 1)])
        for r in range(t)
    ]


def _columns(x: Array, cols: np.ndarray) -> Array:
    """A copy of the columns ``cols`` (last axis) of ``x``."""
    if is_shape_only(x):
        return ShapeArray((*x.shape[:-1], len(cols)), dtype_of(x))
    return x[..., cols].copy()


class PickedColumns(ColumnParallel):
    """A column-parallel GEMM whose rank ``r`` holds the columns ``columns[r]`` of the
    single-device weight (and bias); columns held by several ranks are replicas
    whose gradients are added over them (module docstring).

    Attributes:
        columns: per rank, the indices of its columns in the single-device weight.
        width: the single-device weight's columns.
        groups: the ranks that hold the same replicated columns, one list per
            group (empty when no column is replicated).
    """

    def __init__(
        self, linear: Linear, columns: list[np.ndarray], region: Region, where: str
    ) -> None:
        shards = [
            Linear(
                linear.name,
                _columns(linear.weight.value, cols),
                None if linear.bias is None else _columns(linear.bias.value, cols),
            )
            for cols in columns
        ]
        super().__init__(linear.name, shards, region, where)
        self.columns = columns
        self.width = width = linear.weight.shape[1]
        held = np.zeros((len(columns), width), dtype=bool)  # rank r holds column c
        for r, cols in enumerate(columns):
            held[r, cols] = True
        shared = np.flatnonzero(held.sum(axis=0) > 1)
        # the ranks holding each shared column, one group per distinct set
        sets = np.unique(held[:, shared], axis=1) if len(shared) else np.zeros((0, 0))
        self.groups = sorted(np.flatnonzero(ranks).tolist() for ranks in sets.T)
        # per rank, the positions among its columns of those it shares with others
        self._shared = [np.flatnonzero(np.isin(cols, shared)) for cols in columns]
        # the model's formula counts a replicated column's GEMMs once, not once per replica
        replicas = held.sum(axis=0)
        for shard, cols in zip(self.shards, columns, strict=True):
            shard.credit = float((1.0 / replicas[cols]).sum() / len(cols))

    def backward_weight(self, wctx: list[Any]) -> None:
        with self._replicas_summed():
            super().backward_weight(wctx)

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        with self._replicas_summed():
            return super().backward(dys, ctx)

    @contextlib.contextmanager
    def _replicas_summed(self) -> Iterator[None]:
        """Inside the block, the gradients of replicated columns become their sums over
        the replicas: this micro-batch's gradients go to fresh buffers, the shared
        columns are all-reduced inside every group, and the sums are added to the
        accumulated gradients (as :func:`.compose.summed_over_ranks` does for the
        whole group)."""
        if not self.groups:
            yield
            return
        params = [self.params(r) for r in range(self.ranks)]
        kept = [[p.grad for p in ps] for ps in params]
        for ps in params:
            for p in ps:
                p.grad = like(p.grad)
        yield
        pieces = [concat([self._shared_part(p, r) for p in ps]) for r, ps in enumerate(params)]
        label = f"all-reduce replicated kv grads ({self.name})"
        summed = in_groups("all_reduce", pieces, self.groups, label)
        for r, (ps, grads) in enumerate(zip(params, kept, strict=True)):
            offset = 0
            for p, g in zip(ps, grads, strict=True):
                part = self._shared_part(p, r)
                if not is_shape_only(p.grad):
                    rows = p.grad[..., self._shared[r]].shape
                    p.grad[..., self._shared[r]] = summed[r][offset : offset + part.size].reshape(
                        rows
                    )
                offset += part.size
                g += p.grad
                p.grad = g

    def _shared_part(self, p: Param, r: int) -> Array:
        """The replicated columns of rank ``r``'s fresh gradient of ``p``, flattened."""
        if is_shape_only(p.grad):
            size = len(self._shared[r]) * (p.size // p.shape[-1])
            return ShapeArray((size,), dtype_of(p.grad))
        return p.grad[..., self._shared[r]].reshape(-1)

    def full_params(self) -> dict[str, Array]:
        out: dict[str, Array] = {}
        for i, first in enumerate(self.shards[0].parameters()):
            shape = (*first.shape[:-1], self.width)
            if is_shape_only(first.value):
                out[first.name] = ShapeArray(shape, dtype_of(first.value))
                continue
            whole = np.zeros(shape, dtype=first.value.dtype)
            for shard, cols in zip(self.shards, self.columns, strict=True):
                whole[..., cols] = shard.parameters()[i].value
            out[first.name] = whole
        return out
