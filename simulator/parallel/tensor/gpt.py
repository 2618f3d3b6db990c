"""Tensor (and sequence) parallelism for the GPT and Llama: layers and vocabulary-parallel ends.

Built from the pieces of :mod:`simulator.parallel.tensor` around the
single-device layers, whose parameters are sliced per rank (Shoeybi et al.
2019, sec. 3, fig. 3 and 4):

* **transformer layer**: ``qkv`` column-parallel by whole heads (its output is
  head-major, so a block of columns is a block of heads), the attention core
  on each rank's ``a/t`` heads with that window of the single-device dropout
  mask, ``proj`` row-parallel; ``fc1`` column-parallel and ``fc2``
  row-parallel on the ``4h`` inner size. Layer norms are replicated; the bias
  of a row-parallel layer is added once, after g. Four f/g collectives per
  layer, two per residual branch. The Llama layer is the same class: its
  grouped-query QKV and its SwiGLU ``fc1`` pick their columns per rank
  (:mod:`.grouped`), its RMSNorms are replicated, and it has no biases.
* **embedding**: vocabulary-parallel. The table is first padded with unused
  words to ``V``, a multiple of ``make_vocab_size_divisible_by x t``, as
  Megatron-LM pads it (:mod:`simulator.nn.embedding`), so any ``t`` splits
  it. Rank ``r`` holds rows ``r V/t .. (r+1) V/t``, looks up zeros for other ids, and g adds
  the partial embeddings (all-reduce; under sequence parallelism a
  reduce-scatter, so each rank keeps its positions, adds their position
  embeddings, if the model has a position table, and applies that window of
  the dropout mask).
* **head**: the final layer norm (replicated), then the logits as a
  column-parallel GEMM with the *same* per-rank shard of the tied table (or,
  untied, the same rows of the output layer's own table).
  Rank ``r``'s logits cover its ``V/t`` words only.
* **loss**: :mod:`.loss` works on those shards and
  exchanges only ``b s`` numbers per step of the softmax, so the ``b s V``
  logits are never gathered.

Sequence parallelism (Korthikanti et al. 2022, sec. 4.2.2) splits the layer
norms, dropouts and residual additions along the sequence; the layer norms'
(and row-parallel biases') gradients are then partial sums, added across the
group in the weight-gradient pass
(:func:`.compose.summed_over_ranks`).
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from ...nn.embedding import Embedding, TiedLogits, Vocabulary, padded_table
from ...nn.gpt import Head
from ...nn.param import Param
from ...nn.transformer import TransformerLayer
from ...ops.arrays import Array, concat
from .block import ParallelBlock, ShardMap
from .collectives import Region, per_rank
from .compose import Chain, Residual, SequenceDropout, replicas, summed_over_ranks
from .grouped import PickedColumns, core_shard, gated_columns, qkv_columns
from .linear import ColumnParallel, RowParallel, check_divides, column_shards, own

#: The shards cut from each tied token table, by ``t``.
_TABLE_SHARDS: weakref.WeakKeyDictionary[Param, dict[int, list[Param]]] = (
    weakref.WeakKeyDictionary()
)


def table_shards(table: Param, t: int, rows: int) -> list[Param]:
    """Rank ``r``'s rows ``r V/t .. (r+1) V/t`` of a tied token table padded to
    ``V = rows`` rows (zeros: the padded words), one Param per rank.

    The embedding and the logits ask for the shards of the same table and get
    the same Param objects, as the single-device model shares one Param: on
    one worker both uses accumulate into one gradient. A pipeline that puts
    them on different workers gives the logits a copy (:meth:`ParallelHead.own_copy`).
    """
    cut = _TABLE_SHARDS.setdefault(table, {})
    if t not in cut:
        whole, per = padded_table(table.value, rows), rows // t
        cut[t] = [Param(table.name, own(whole[r * per : (r + 1) * per])) for r in range(t)]
    return cut[t]


def vocabulary_of(layer: Embedding | TiedLogits) -> Vocabulary:
    """The words and padding unit of a table (all rows are words if none was given)."""
    return layer.vocabulary or Vocabulary(layer.weight.shape[0])


def trimmed(params: dict[str, Array], name: str, rows: int) -> dict[str, Array]:
    """``params`` with the table ``name`` cut back to the single-device model's ``rows``
    (tensor parallelism pads it further with zero rows)."""
    if name in params:
        params[name] = params[name][:rows]
    return params


class Sharded(ParallelBlock):
    """A single-device block rebuilt from parallel pieces, ``body``.

    Under sequence parallelism the gradients of the parameters listed by
    :meth:`partial` are partial sums; W adds them over the group.
    """

    body: Chain
    region: Region

    def partial(self, rank: int) -> list[Param]:
        """Replicated parameters whose gradient on ``rank`` covers only its positions."""
        raise NotImplementedError

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        return self.body.forward(xs)

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Array], list[Any]]:
        return self.body.backward_input(dys, ctx)

    def backward_weight(self, wctx: list[Any]) -> None:
        with self._partial_sums():
            self.body.backward_weight(wctx)

    def backward(self, dys: list[Array], ctx: list[Any]) -> list[Array]:
        with self._partial_sums():
            return self.body.backward(dys, ctx)

    def _partial_sums(self) -> Any:
        """Under sequence parallelism, the gradients of :meth:`partial` summed over ranks."""
        if not self.region.sequence_parallel:
            return contextlib.nullcontext()
        params = [self.partial(r) for r in range(self.ranks)]
        return summed_over_ranks(params, f"all-reduce layernorm grads ({self.name})")

    def params(self, rank: int) -> list[Param]:
        return self.body.params(rank)

    def borrowed(self, rank: int) -> list[Param]:
        return self.body.borrowed(rank)

    def expert_params(self, rank: int) -> list[Param]:
        return self.body.expert_params(rank)

    def own_copy(self, rank: int, param: Param) -> Param:
        return self.body.own_copy(rank, param)

    def configure(self, selective: bool) -> None:
        self.body.configure(selective)

    def full_params(self) -> dict[str, Array]:
        return self.body.full_params()


def dropout_block(layer: Any, t: int, sequence_parallel: bool) -> ParallelBlock:
    """A dropout of the replicated region: every rank applies the whole mask to its
    copy, or, under sequence parallelism, its positions' window of it."""
    return SequenceDropout(layer, t) if sequence_parallel else ShardMap([layer] * t)


class ParallelTransformerLayer(Sharded):
    """One GPT-2 layer over ``t`` ranks (fig. 3 of Shoeybi et al. 2019; with sequence
    parallelism fig. 5 of Korthikanti et al. 2022)::

        x1 = x  + dropout(g(proj_r(core_r(qkv_r(f(ln1(x)))))) + b_proj)
        y  = x1 + dropout(g(fc2_r(gelu(fc1_r(f(ln2(x1)))))) + b_fc2)
    """

    def __init__(
        self,
        layer: TransformerLayer,
        t: int,
        sequence_parallel: bool,
        overlap: bool = True,
        mlp: ParallelBlock | None = None,
        pipelined: bool = False,
    ) -> None:
        """``mlp``: what runs between ``ln2`` and the dropout instead of ``fc1``, the
        activation and ``fc2`` (a mixture of experts, :mod:`simulator.parallel.expert`);
        ``pipelined``: the layer's GEMMs overlap the collectives they wait for
        (Megatron-Core's ``--tp-comm-overlap``, :mod:`.pipelined`)."""
        core = layer.core
        columns = qkv_columns(core, t)  # checks what must divide what
        self.name = layer.name
        self.ranks = t
        self.recomputable = getattr(layer, "recomputable", True)
        self.region = region = Region(t, sequence_parallel, overlap, pipelined)
        attention, where = f"{layer.name} attention", f"{layer.name} mlp"
        self.ln1, self.ln2 = replicas(layer.ln1, t), replicas(layer.ln2, t)
        self.proj = RowParallel(layer.proj, region, attention)
        self.fc2: RowParallel | None = None
        if mlp is None:
            assert layer.fc1 is not None and layer.fc2 is not None
            if getattr(layer.activation, "gated", False):
                fc1: ParallelBlock = PickedColumns(
                    layer.fc1, gated_columns(layer.fc1.weight.shape[1], t), region, where
                )
            else:
                inner = layer.fc1.weight.shape[1]
                check_divides(
                    "MLP inner size", inner, t, f"choose tp among the divisors of {inner}"
                )
                fc1 = ColumnParallel(layer.fc1.name, column_shards(layer.fc1, t), region, where)
            self.fc2 = RowParallel(layer.fc2, region, where)
            middle = [fc1, ShardMap([layer.activation] * t), self.fc2]
        else:
            middle = [mlp]
        self.body = Chain(
            layer.name,
            [
                Residual(
                    f"{layer.name}.attn",
                    [
                        self.ln1,
                        PickedColumns(layer.qkv, columns, region, attention),
                        ShardMap([core_shard(core, t, r) for r in range(t)]),
                        self.proj,
                        dropout_block(layer.drop1, t, sequence_parallel),
                    ],
                ),
                Residual(
                    f"{layer.name}.mlp",
                    [self.ln2, *middle, dropout_block(layer.drop2, t, sequence_parallel)],
                ),
            ],
        )

    def partial(self, rank: int) -> list[Param]:
        return [
            *self.ln1.params(rank),
            *self.proj.biases[rank : rank + 1],
            *self.ln2.params(rank),
            *(self.fc2.biases[rank : rank + 1] if self.fc2 is not None else []),
        ]


class ParallelHead(Sharded):
    """Final layer norm, then vocabulary-parallel logits ``x W_r^T`` from the tied table."""

    def __init__(self, head: Head, t: int, sequence_parallel: bool, overlap: bool = True) -> None:
        table = head.logits.weight
        vocabulary = vocabulary_of(head.logits)
        rows, per = vocabulary.rows(t), vocabulary.rows(t) // t
        self.name = head.name
        self.ranks = t
        self.recomputable = head.recomputable
        self.region = Region(t, sequence_parallel, overlap)
        self.table, self.table_rows = table.name, table.shape[0]
        # rank r's real words: the ones of its rows below the vocabulary's end
        tied = [
            TiedLogits(head.logits.name, shard, min(max(vocabulary.words - r * per, 0), per))
            for r, shard in enumerate(table_shards(table, t, rows))
        ]
        for logits in tied:
            logits.owned = head.logits.owned
        self.ln_f = replicas(head.ln_f, t)
        logits = ColumnParallel(head.logits.name, tied, self.region, "logits", axis=0)
        self.body = Chain(head.name, [self.ln_f, logits])

    def partial(self, rank: int) -> list[Param]:
        return self.ln_f.params(rank)

    def full_params(self) -> dict[str, Array]:
        return trimmed(super().full_params(), self.table, self.table_rows)


class VocabParallelEmbedding(ParallelBlock):
    """Token and position embeddings with the token table split by vocabulary rows.

    Every rank runs the single-device :class:`~simulator.nn.embedding.Embedding`
    on its shard (``vocab_start`` masks the other ids); g adds the partial
    lookups. Backward needs no communication for the table without sequence
    parallelism; with it, g's backward all-gathers the output gradient, from
    which every rank computes its rows' and the whole position table's
    gradient (so the position table's gradient is complete on every rank).
    """

    recomputable = False

    def __init__(self, embedding: Embedding, t: int, sequence_parallel: bool) -> None:
        vocabulary = vocabulary_of(embedding)
        rows = vocabulary.rows(t)
        seq_len = embedding.tokens  # of every sequence: all, or a context-parallel rank's
        if sequence_parallel:
            check_divides(
                "sequence length that sequence parallelism splits",
                seq_len,
                t,
                "choose a seq_len that tp divides or set sequence_parallel = false",
            )
        self.name = embedding.name
        self.ranks = t
        self.region = Region(t, sequence_parallel)
        self.table_rows = embedding.weight.shape[0]
        positions = embedding.positions
        window = seq_len // t
        self.shards = [
            Embedding(
                embedding.name,
                shard,
                None if positions is None else Param(positions.name, own(positions.value)),
                embedding.dropout.sliced((slice(r * window, (r + 1) * window),), (seq_len,))
                if sequence_parallel
                else embedding.dropout,
                vocab_start=r * (rows // t),
                vocabulary=vocabulary,
                seq_len=embedding.seq_len,
            )
            for r, shard in enumerate(table_shards(embedding.weight, t, rows))
        ]
        for shard in self.shards:
            shard.held = embedding.held

    def forward(self, xs: list[Array]) -> tuple[list[Array], list[Any]]:
        words = per_rank(self.ranks, lambda r: self.shards[r].lookup(xs[r]))
        words = self.region.leave(words, "embedding")
        # a sequence-parallel rank holds positions r n .. (r+1) n - 1
        n = words[0].shape[1] if self.region.sequence_parallel else 0
        outs = per_rank(self.ranks, lambda r: self.shards[r].add_positions(words[r], r * n))
        return [y for y, _ in outs], [(x, mask) for x, (_, mask) in zip(xs, outs, strict=True)]

    def backward_input(self, dys: list[Array], ctx: list[Any]) -> tuple[list[Any], list[Any]]:
        def undrop(r: int) -> Array:
            return self.shards[r].dropout.backward_input(dys[r], ctx[r][1])[0]

        dsums = self.region.leave_backward(per_rank(self.ranks, undrop), "embedding")
        return [None] * self.ranks, [(c[0], d) for c, d in zip(ctx, dsums, strict=True)]

    def backward_weight(self, wctx: list[Any]) -> None:
        per_rank(self.ranks, lambda r: self.shards[r].backward_weight(wctx[r]))

    def params(self, rank: int) -> list[Param]:
        return self.shards[rank].parameters()

    def full_params(self) -> dict[str, Array]:
        first = self.shards[0]
        table = concat([s.weight.value for s in self.shards], 0)
        out = {first.weight.name: table[: self.table_rows]}
        if first.positions is not None:
            out[first.positions.name] = first.positions.value
        return out


def shard_gpt_block(
    block: Any, t: int, sequence_parallel: bool, overlap: bool = True, pipelined: bool = False
) -> ParallelBlock | None:
    """The tensor-parallel version of a GPT block, or None for a block of another model.
    ``pipelined`` applies to the transformer layers only: Megatron-Core's embedding and
    output layer are not Transformer Engine's, and their collectives stay blocking."""
    if isinstance(block, TransformerLayer):
        return ParallelTransformerLayer(block, t, sequence_parallel, overlap, pipelined=pipelined)
    if isinstance(block, Embedding):
        return VocabParallelEmbedding(block, t, sequence_parallel)
    if isinstance(block, Head):
        return ParallelHead(block, t, sequence_parallel, overlap)
    return None
