"""Ring attention: keys and values travel around the context-parallel ring.

Liu, Zaharia and Abbeel 2023, "Ring Attention with Blockwise Transformers for
Near-Infinite Context" (sec. 3), as Megatron-Core runs it through
TransformerEngine (``AttnFuncWithCPAndKVP2P``). Every rank holds its queries
and, at first, its own keys and values. In ``cp`` steps it attends its
queries to the block of keys and values it holds while sending that block to
the next rank and receiving the previous rank's: ``cp - 1`` point-to-point
steps of ``2 b (s/cp) kv d`` elements (keys and values of its ``kv`` heads),
each running alongside the attention on the block already held, so a
transfer is hidden when it is shorter than that attention and exposed
otherwise. Each step's partial output merges into the running one by its
log-sum-exp (:func:`~simulator.ops.attention.merge_attention`).

Under the causal mask a block is attended only where some query sees some
key (:mod:`.layout`): with the balanced layout, rank ``c`` (chunks ``c`` and
``2 cp - 1 - c``) attends its own block causally, an earlier rank's block
(``j < c``) with both chunks of queries against its first chunk of keys, and
a later rank's (``j > c``) with its second chunk of queries against both --
``2 n^2`` pairs every step on every rank (``n`` the chunk), one kernel each.

The backward sends the keys and values around the ring again, in ``cp - 1``
steps, and with them the gradients of a block's keys and values, which
collect every rank's share on the way (TransformerEngine sends them as the
forward sends keys and values): the block of rank ``j`` starts collecting at
rank ``j + 1`` and reaches ``j`` again after ``cp - 1`` steps, where ``j``
adds its own share. The backward of a block needs no merge: with the whole
row's output and log-sum-exp each block's gradients are its own
(:mod:`simulator.nn.blockwise`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...nn.blockwise import attend_block, attend_block_backward
from ...ops.arrays import Array, is_shape_only
from ...ops.attention import merge_attention, row_dot, visible_pairs
from ...ops.basic import add
from ...ops.tape import new_handle
from ..tensor.collectives import per_rank, wait
from .exchange import collect_kv, exchange, pack_kv, unpack_kv

if TYPE_CHECKING:
    from .attention import ContextParallelAttention

Spans = tuple[tuple[int, int], ...]


def visible(q_spans: Spans, k_spans: Spans) -> tuple[slice, Spans, slice, Spans] | None:
    """The part of a block a causal attention needs: the rows of the query runs that see
    a key of the block and the rows of the key runs they see, as slices of the
    rank's arrays with their runs; None when no query sees any key."""

    def sees(q: tuple[int, int], k: tuple[int, int]) -> bool:
        return visible_pairs(q[1], k[1], q[0], k[0]) > 0

    qi = [i for i, q in enumerate(q_spans) if any(sees(q, k) for k in k_spans)]
    if not qi:
        return None
    ki = [j for j, k in enumerate(k_spans) if any(sees(q_spans[i], k) for i in qi)]
    return (*_rows(q_spans, qi), *_rows(k_spans, ki))


def _rows(spans: Spans, chosen: list[int]) -> tuple[slice, Spans]:
    """The rows of the runs ``chosen`` (consecutive) of an array holding ``spans``."""
    lo, hi = chosen[0], chosen[-1] + 1
    assert chosen == list(range(lo, hi)), "a rank's visible runs are consecutive"
    start = sum(n for _, n in spans[:lo])
    return slice(start, start + sum(n for _, n in spans[lo:hi])), spans[lo:hi]


def _label(att: ContextParallelAttention, step: int, what: str) -> str:
    return f"ring {step + 1}/{att.cp - 1}: {what} ({att.where})"


def _place(whole: Array, rows: slice, part: Array) -> Array:
    """``whole`` with ``part`` written in its ``rows`` (along the sequence axis)."""
    if is_shape_only(whole) or (rows.start == 0 and rows.stop == whole.shape[-2]):
        return whole if is_shape_only(whole) else part
    whole[..., rows, :] = part
    return whole


def _add_rows(whole: Array, rows: slice, part: Array, name: str) -> Array:
    """``whole`` with ``part`` added to its ``rows`` (one kernel on those rows)."""
    return _place(whole, rows, add(whole[..., rows, :], part, name=name))


class _Attending:
    """One rank's forward: its queries, and its output and log-sum-exp so far."""

    def __init__(self, att: ContextParallelAttention, i: int, x: Array) -> None:
        self.att, self.i, self.core = att, i, att.cores[i]
        self.q, self.k, self.v = self.core.split(x)
        self.kv = pack_kv(self.k, self.v, f"{att.name}.kv")  # the block it sends first
        self.out: Any = None
        self.lse: Any = None
        self.kept: list[Any] = []  # per step, what the block's backward needs

    def attend(self, step: int, kv: Array) -> None:
        """Attention on the block held at ``step`` (that of rank ``c - step``), merged."""
        att = self.att
        owner = (self.i // att.t - step) % att.cp
        part = visible(att.spans(self.i), att.layout.spans(owner))
        if part is None:
            self.kept.append(None)
            return
        rows, qs, cols, ks = part
        k, v = unpack_kv(kv)
        q = self.q[..., rows, :]
        out, lse, kept = attend_block(
            self.core, q, k[..., cols, :], v[..., cols, :], qs, ks, att.seq_len
        )
        self.kept.append(kept)
        if self.out is None:
            # the running statistics are updated in place below; the block's own
            # (kept for its backward) must not be
            self.out, self.lse = out, lse if is_shape_only(lse) else lse.copy()
            return
        merged, merged_lse = merge_attention(self.out[..., rows, :], self.lse[..., rows], out, lse)
        self.out = _place(self.out, rows, merged)
        if is_shape_only(self.lse) or rows.stop - rows.start == self.lse.shape[-1]:
            self.lse = self.lse if is_shape_only(self.lse) else merged_lse
        else:
            self.lse[..., rows] = merged_lse

    def finish(self) -> tuple[Array, tuple]:
        """The output with its heads merged, and what backward keeps."""
        y = self.core.merge(self.out)
        return y, (self.q, self.k, self.v, y, self.lse, self.kept)


class _Differentiating:
    """One rank's backward: its dQ so far, its share of its own block's dK, dV, and
    the dK, dV of the block that collects shares around the ring."""

    def __init__(self, att: ContextParallelAttention, i: int, dy: Array, ctx: tuple) -> None:
        self.att, self.i, self.core = att, i, att.cores[i]
        self.q, self.k, self.v, y, self.lse, self.kept = ctx
        name = att.name
        self.dout, self.out = self.core.heads_of(dy), self.core.heads_of(y)
        self.rows = None if self.core.flash else row_dot(self.dout, self.out)
        self.kv = pack_kv(self.k, self.v, f"{name}.kv")
        self.dq: Any = None
        self.share: Any = None  # this step's (rows, dK, dV) of the block held
        self.own: Any = None

    def differentiate(self, step: int, kv: Array) -> None:
        """The gradients of the block held at ``step``: dQ added to the rank's, the
        block's dK, dV kept as this step's share."""
        att = self.att
        owner = (self.i // att.t - step) % att.cp
        part = visible(att.spans(self.i), att.layout.spans(owner))
        self.share = None
        if part is None:
            return
        rows, qs, cols, ks = part
        kb, vb = unpack_kv(kv)
        rowsum = None if self.rows is None else self.rows[..., rows]
        dq, dk, dv = attend_block_backward(
            self.core, self.dout[..., rows, :], self.q[..., rows, :], kb[..., cols, :],
            vb[..., cols, :], self.out[..., rows, :], self.lse[..., rows], rowsum,
            self.kept[step], qs, ks, att.seq_len,
        )  # fmt: skip
        self.dq = dq if self.dq is None else _add_rows(self.dq, rows, dq, f"{att.name}.dq.add")
        self.share = (cols, dk, dv)

    def collect(self, carried: Array | None) -> Array:
        """``carried`` (or a new buffer) with this step's share of the block added."""
        return collect_kv(carried, self.share, self.kv, f"{self.att.name}.dkv")

    def gradient(self, carried: Array | None) -> Array:
        """The QKV gradient, once the rank's block has come back with every other
        rank's share (``carried``: None with one rank)."""
        dkv = (
            self.own if carried is None else add(self.own, carried, name=f"{self.att.name}.dkv.add")
        )
        dk, dv = unpack_kv(dkv)
        return self.core.unrotate(self.dq, dk, dv)


class Ring:
    """Ring attention (module docstring)."""

    def forward(self, att: ContextParallelAttention, xs: list[Array]) -> tuple[list, list]:
        n, t, cp = att.ranks, att.t, att.cp
        ranks = per_rank(n, lambda i: _Attending(att, i, xs[i]))
        kvs = [r.kv for r in ranks]
        for step in range(cp):
            if step < cp - 1:
                handle = new_handle()
                received = exchange("send_recv", kvs, t, _label(att, step, "K,V"), handle)
            per_rank(n, lambda i, step=step, kvs=kvs: ranks[i].attend(step, kvs[i]))
            if step < cp - 1:
                wait(handle)
                kvs = received
        done = per_rank(n, lambda i: ranks[i].finish())
        return [y for y, _ in done], [ctx for _, ctx in done]

    def backward(self, att: ContextParallelAttention, dys: list[Array], ctx: list) -> list:
        n, t, cp = att.ranks, att.t, att.cp
        ranks = per_rank(n, lambda i: _Differentiating(att, i, dys[i], ctx[i]))
        kvs = [r.kv for r in ranks]
        carried: list[Any] = [None] * n  # the dK, dV a block collects around the ring
        sent = -1
        for step in range(cp):
            if step < cp - 1:
                handle = new_handle()
                received = exchange("send_recv", kvs, t, _label(att, step, "K,V"), handle)
            per_rank(n, lambda i, step=step, kvs=kvs: ranks[i].differentiate(step, kvs[i]))
            if step == 0:  # its own block: its share stays
                for r, own in zip(
                    ranks, per_rank(n, lambda i: ranks[i].collect(None)), strict=True
                ):
                    r.own = own
            else:  # another's: its share joins the block's dK, dV on their way home
                if step >= 2:
                    wait(sent)
                collected = per_rank(n, lambda i, carried=carried: ranks[i].collect(carried[i]))
                sent = new_handle()
                carried = exchange("send_recv", collected, t, _label(att, step - 1, "dK,dV"), sent)
            if step < cp - 1:
                wait(handle)
                kvs = received
        if cp > 1:
            wait(sent)
        return per_rank(n, lambda i: ranks[i].gradient(carried[i]))
