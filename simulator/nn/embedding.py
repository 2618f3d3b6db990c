"""Token and position embeddings, and the output layer that shares the token table.

GPT's input is ``h0 = W_e[tokens] + W_p[positions]`` (Radford et al. 2018,
"Improving Language Understanding by Generative Pre-Training", sec. 3.1,
eq. 2), followed by dropout in GPT-2. Its output logits reuse the token table:
``logits = h W_e^T`` (weight tying, Press and Wolf 2017, "Using the Output
Embedding to Improve Language Models"; GPT-2 and Megatron-LM do the same).

Tying means one :class:`~simulator.nn.param.Param` object serves both ends of
the model. :class:`Embedding` owns it and lists it in ``parameters()``;
:class:`TiedLogits` borrows it (``logits.weight is embedding.weight``) and
lists nothing, so the model, its optimizer and its memory count the table
once, while the gradients of both uses accumulate into the one ``grad``.

A lookup is a gather, not a GEMM: it adds no model FLOPs (Korthikanti et al.
2022, appendix A count only the logits GEMM, ``2bshV``).

*Vocabulary padding.* Megatron-LM pads the vocabulary with unused words up to
a multiple of ``make_vocab_size_divisible_by x tp`` (128 by default;
``_vocab_size_with_padding`` in ``megatron/training/tokenizer/tokenizer.py``),
so that the table splits evenly over the tensor-parallel ranks and its GEMMs
get friendly shapes: GPT-2's 50257 words become 50304 on one GPU and 51200
with ``tp = 8``. The padded rows are real parameters: they count in the
parameters, the memory, the gradient traffic and the logits GEMM
(``2bsh V_padded``), as in Megatron. :func:`padded_vocab` is the rule.

Megatron-LM leaves the padded words in its softmax (no token ever targets
them, so training pushes their logits down); the loss then differs from an
unpadded model's, and differs between two ``tp`` (which pad differently). The
simulator's contract is that every layout trains exactly like one device, so
:class:`TiedLogits` sets the padded words' logits to ``-inf`` before the loss:
``exp(-inf) = 0``, so they take no probability, get no gradient, and the
padded rows (zeros from the start) stay zeros. That masking is numerics
bookkeeping, not a kernel Megatron runs, so it costs no simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ops
from ..ops import functional as ops_nn
from ..ops.arrays import Array, ShapeArray, is_shape_only
from .dropout import Dropout
from .layers import Layer, init_normal
from .param import Param


def padded_vocab(words: int, divisible_by: int, tp: int = 1) -> int:
    """Megatron-LM's padded vocabulary: ``words`` rounded up to a multiple of
    ``divisible_by x tp`` (``_vocab_size_with_padding``; ``divisible_by = 1``
    pads only to a multiple of ``tp``)."""
    unit = divisible_by * tp
    return math.ceil(words / unit) * unit


@dataclass(frozen=True)
class Vocabulary:
    """The real words of a token table and Megatron's padding unit for it."""

    words: int
    divisible_by: int = 1

    def rows(self, tp: int = 1) -> int:
        """The table's rows under ``tp``-way tensor parallelism."""
        return padded_vocab(self.words, self.divisible_by, tp)


def padded_table(table: Array, rows: int) -> Array:
    """``table`` with zero rows appended up to ``rows`` rows (the padded words)."""
    extra = rows - table.shape[0]
    if extra <= 0:
        return table
    if is_shape_only(table):
        return ShapeArray((rows, *table.shape[1:]), table.dtype)
    return np.concatenate([table, np.zeros((extra, *table.shape[1:]), table.dtype)])


class Embedding(Layer):
    """Token ids ``(b, s)`` -> ``dropout(W_e[ids] + W_p[0..s-1])``, ``(b, s, hidden)``.

    Backward has no input gradient (token ids are integers): B only undoes the
    dropout, W scatter-adds the gradient into the rows of both tables that
    forward read.

    Forward is :meth:`lookup` then :meth:`add_positions`, so that a
    vocabulary-parallel rank can add the partial lookups of all ranks between
    the two (Megatron-LM, Shoeybi et al. 2019, sec. 3).

    Attributes:
        weight: the token table ``(vocab, hidden)``, shared with the output layer
            when the weights are tied.
        positions: the learned position table ``(seq_len, hidden)``, or None for a
            model whose attention rotates queries and keys instead (Llama's RoPE).
        dropout: dropout on the sum (site ``embedding``).
        vocab_start: None for the whole token table; for a vocabulary shard, the
            id of its first row (ids outside the shard look up zeros).
        vocabulary: the real words and the padding unit (``None``: every row is
            a word and nothing pads).
        held: the positions of the tokens this embedding sees, when it sees only
            some of every sequence (a context-parallel rank's two chunks,
            :mod:`simulator.parallel.context`); None for the whole sequence.
    """

    #: Megatron-LM checkpoints transformer layers only; rerunning this block
    #: would be wasted work (and is outside Megatron-LM SC21 eq. 3).
    recomputable = False

    def __init__(
        self,
        name: str,
        weight: Param,
        positions: Param | None,
        dropout: Dropout,
        vocab_start: int | None = None,
        vocabulary: Vocabulary | None = None,
        seq_len: int | None = None,
    ) -> None:
        if positions is None and seq_len is None:
            raise ValueError(f"{name}: without a position table, give the seq_len")
        self.name = name
        self.weight = weight
        self.positions = positions
        #: the longest sequence (the position table's rows, when there is one)
        self.seq_len = positions.shape[0] if positions is not None else seq_len
        self.dropout = dropout
        self.vocab_start = vocab_start
        self.vocabulary = vocabulary
        self.held: np.ndarray | None = None

    @property
    def tokens(self) -> int:
        """How many tokens of every sequence it sees: :attr:`held`'s, or the sequence."""
        return self.seq_len if self.held is None else len(self.held)

    @classmethod
    def create(
        cls,
        name: str,
        vocab: int,
        seq_len: int,
        hidden: int,
        dropout: float,
        rng: np.random.Generator | None,
        dtype: str,
        std: float = 0.02,
        divisible_by: int = 1,
        learned_positions: bool = True,
    ) -> Embedding:
        """Both tables ``N(0, std^2)``, as GPT-2 initialises them; the token table is
        padded with zero rows to a multiple of ``divisible_by`` (the module
        docstring; the random draws do not depend on the padding). Without
        ``learned_positions`` there is no position table."""
        vocabulary = Vocabulary(vocab, divisible_by)
        words = init_normal(rng, (vocab, hidden), std, dtype)
        positions = None
        if learned_positions:
            positions = Param(f"{name}.wpe", init_normal(rng, (seq_len, hidden), std, dtype))
        return cls(
            name,
            Param(f"{name}.wte", padded_table(words, vocabulary.rows())),
            positions,
            Dropout(dropout, 0, "embedding"),
            vocabulary=vocabulary,
            seq_len=seq_len,
        )

    def parameters(self) -> list[Param]:
        return [self.weight] if self.positions is None else [self.weight, self.positions]

    def _position_ids(self, x: Array, first: int = 0) -> Array:
        """Ids ``first .. first+n-1`` as one row ``(1, n)``, ``n = x.shape[1]``,
        broadcast over the batch (of the :attr:`held` positions, when it holds some)."""
        n = x.shape[1]
        if first + n > self.tokens:
            raise ValueError(
                f"sequence of {first + n} tokens is longer than the {self.tokens} positions"
            )
        if is_shape_only(x):
            return ShapeArray((1, n), "int64")
        if self.held is not None:
            return self.held[first : first + n][None, :]
        return np.arange(first, first + n)[None, :]

    def lookup(self, tokens: Array) -> Array:
        """The token rows ``W_e[tokens]`` (zeros for ids outside a vocabulary shard)."""
        return ops_nn.embedding(tokens, self.weight.value, self.vocab_start)

    def add_positions(self, words: Array, first: int = 0) -> tuple[Array, Array | None]:
        """``dropout(words + W_p[first .. first+n-1])`` and the dropout mask.

        ``first`` is the position of the first row, non-zero for a
        sequence-parallel rank that holds a later part of the sequence. Without
        a position table, only the dropout.
        """
        if self.positions is None:
            return self.dropout.forward(words)
        where = ops_nn.embedding(self._position_ids(words, first), self.positions.value)
        return self.dropout.forward(ops.add(words, where, name=f"{self.name}.add"))

    def forward(self, x: Array) -> tuple[Array, Any]:
        y, mask = self.add_positions(self.lookup(x))
        return y, (x, mask)

    def backward_input(self, dy: Array, ctx: Any) -> tuple[None, Any]:
        tokens, mask = ctx
        dsum, _ = self.dropout.backward_input(dy, mask)
        return None, (tokens, dsum)

    def backward_weight(self, wctx: Any) -> None:
        tokens, dsum = wctx
        self.weight.accumulate(
            ops_nn.embedding_backward(tokens, dsum, self.weight.shape[0], self.vocab_start)
        )
        if self.positions is None:
            return
        positions = self._position_ids(tokens)
        self.positions.accumulate(
            ops_nn.embedding_backward(positions, dsum, self.positions.shape[0])
        )


class TiedLogits(Layer):
    """``logits = x W^T`` with ``W`` the embedding's token table ``(vocab, hidden)``.

    FLOPs: ``2bshV`` forward, the same for B (``dx = dlogits W``) and for W
    (``dW += dlogits^T x``). The parameter is borrowed, so ``parameters()`` is
    empty; see the module docstring. When a pipeline separates it from the
    embedding, :meth:`own_copy` makes it hold (and list) a copy instead.

    ``words``: how many of the table's rows are real words (``None``: all);
    the logits of the others are ``-inf`` (padding, module docstring).
    ``vocabulary``: the whole model's words and padding unit, for tensor
    parallelism to pad the table further.
    """

    def __init__(
        self,
        name: str,
        weight: Param,
        words: int | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        self.name = name
        self.weight = weight
        self.owned = False
        self.words = words
        self.vocabulary = vocabulary

    def parameters(self) -> list[Param]:
        return [self.weight] if self.owned else []

    def borrowed(self) -> list[Param]:
        return [] if self.owned else [self.weight]

    def own_copy(self, param: Param) -> Param:
        if param is not self.weight or self.owned:
            raise ValueError(f"{self.name} does not borrow {param.name}")
        value = param.value if is_shape_only(param.value) else param.value.copy()
        self.weight = Param(param.name, value)
        self.owned = True
        return self.weight

    def forward(self, x: Array) -> tuple[Array, Any]:
        logits = ops.matmul(x, self.weight.value.T, name=self.name)
        if self.words is not None and self.words < logits.shape[-1] and not is_shape_only(logits):
            logits[..., self.words :] = -np.inf  # padded words: no probability, no gradient
        return logits, x

    def backward_input(self, dy: Array, ctx: Any) -> tuple[Array, Any]:
        return ops.matmul(dy, self.weight.value, name=f"{self.name}.dx"), (ctx, dy)

    def backward_weight(self, wctx: Any) -> None:
        x, dy = wctx
        dy2 = dy.reshape(-1, dy.shape[-1])
        x2 = x.reshape(-1, x.shape[-1])
        self.weight.accumulate(ops.matmul(dy2.T, x2, name=f"{self.name}.dW"))


class OutputLogits(TiedLogits):
    """Untied output logits: ``x W^T`` with a ``(vocab, hidden)`` table of its own
    (Llama's output layer, Touvron et al. 2023; Megatron-LM's
    ``--untie-embeddings-and-output-weights``). Everything else is
    :class:`TiedLogits`'s: the same GEMMs and padding, and under tensor
    parallelism the same vocabulary split.
    """

    def __init__(
        self,
        name: str,
        weight: Param,
        words: int | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        super().__init__(name, weight, words, vocabulary)
        self.owned = True
