"""GPT: a decoder-only transformer language model, as pipeline-splittable blocks.

The model is GPT-2's (Radford et al. 2019): token and position embeddings,
``layers`` pre-LN transformer layers, a final layer norm, and logits over the
vocabulary from the token table itself (tied weights), trained with the
next-token cross-entropy. Its blocks are what a pipeline splits:

    [Embedding, TransformerLayer x layers, Head]
    tokens (b, s) int64 -> hidden (b, s, h) -> ... -> logits (b, s, V)

The same code runs on numpy arrays (a tiny GPT really learns) and on shape-only
arrays (a GPT-3-sized step in well under a second), and its counts match the
published formulas exactly:

* parameters: ``12 L h^2 (1 + 13/(12h) + (V+s)/(12Lh)) + 2h`` -- Megatron-LM
  SC21 (Narayanan et al. 2021) eq. 2, which counts the tied token table once
  and the position table, plus the final layer norm's gain and bias (``2h``),
  which eq. 2 leaves out;
* model FLOPs of a step over ``B`` sequences: ``72 B L s h^2 (1 + s/(6h) +
  V/(12hL))`` (Korthikanti et al. 2022, appendix A, eq. 7);
* with full recomputation of every transformer layer: ``96 B s L h^2 (1 +
  s/(6h) + V/(16Lh))`` (Megatron-LM SC21 eq. 3). The embedding and head
  blocks say ``recomputable = False``: rerunning the logits would add
  ``2BshV`` that eq. 3 does not have.
* stash per transformer layer in 16-bit: ``sbh(34 + 5as/h)`` (Korthikanti et
  al. 2022, sec. 4.1, table 2); see :mod:`simulator.nn.transformer`.

``V`` in these formulas is the *padded* vocabulary, as Megatron-LM counts it:
the token table has :meth:`GPTConfig.padded_vocab` rows, the words rounded up to
a multiple of ``make_vocab_size_divisible_by`` (and, under tensor parallelism,
of ``make_vocab_size_divisible_by x tp``; see :mod:`simulator.nn.embedding`).
The padded words never take probability, so the losses are those of the
unpadded model.

With ``ffn_mult`` other than 4 the formulas no longer apply (they assume a
``4h`` MLP); the code counts what it runs either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..keys import check_fields
from ..ops.arrays import NUMPY_DTYPES
from ..ranges import Range
from .attention import KERNELS
from .combinators import Sequential
from .config import ModelConfig
from .cross_entropy import CrossEntropyLoss
from .data import rng_for
from .embedding import Embedding, TiedLogits, Vocabulary
from .layers import Layer
from .models import DTYPE, Model, size
from .moe import check_moe, is_moe_layer, moe_field, moe_spec
from .norm import LayerNorm
from .param import Param
from .text import DATA, LanguageModelData
from .transformer import TransformerLayer

#: Standard deviation of the initial weights: 0 (all zeros) up to 1, far beyond
#: any published value (GPT-2 and GPT-3 use 0.02).
INIT_STD = Range(lo=0, hi=1)


class Head(Sequential):
    """The last block: final layer norm, then logits with the tied token table.

    Attributes:
        ln_f: the final layer norm (GPT-2 adds it after the last layer).
        logits: :class:`~simulator.nn.embedding.TiedLogits`; ``logits.weight``
            is the embedding's ``weight`` Param, the same object.
    """

    #: not rerun under full recomputation (see the module docstring).
    recomputable = False

    def __init__(self, name: str, ln_f: Layer, logits: TiedLogits) -> None:
        self.ln_f = ln_f
        self.logits = logits
        super().__init__(name, [ln_f, logits])

    @classmethod
    def create(
        cls,
        name: str,
        table: Param,
        rng: np.random.Generator | None,
        dtype: str,
        vocabulary: Vocabulary | None = None,
    ) -> Head:
        """``vocabulary``: the real words among the table's rows (the rest is padding)."""
        words = None if vocabulary is None else vocabulary.words
        return cls(
            name,
            LayerNorm(f"{name}.ln_f", table.shape[1], rng, dtype),
            TiedLogits(f"{name}.logits", table, words, vocabulary),
        )


@dataclass(frozen=True)
class GPTConfig(LanguageModelData, ModelConfig):
    """A GPT of ``layers`` layers of width ``hidden`` with ``heads`` heads.

    Attributes:
        layers, hidden, heads, seq_len: L, h, a, s of the formulas.
        vocab: the tokenizer's words; the model's table has
            :meth:`padded_vocab` rows (the ``V`` of the formulas).
        make_vocab_size_divisible_by: Megatron-LM's padding unit (its flag of
            that name, default 128); 1 pads only as much as ``tp`` needs.
        ffn_mult: MLP inner size as a multiple of ``hidden`` (4 in GPT-2/3).
        dropout: drop probability of every dropout (embedding, attention
            probabilities, both residual branches); 0 disables them.
        dtype: ``float64``/``float32`` for numerics, ``bf16``/``fp16`` shape-only.
        data: ``synthetic`` (bigram rule) or ``text`` (characters of the
            shipped text; ``vocab`` must cover them), see :mod:`simulator.nn.text`.
        init_std: standard deviation of the initial weights (GPT-2: 0.02).
        attention: the attention kernel, ``materialised`` (the ``s x s`` scores
            kept, GPT-2's and Korthikanti et al.'s) or ``flash``
            (:mod:`simulator.nn.attention`).
        experts: routed experts of a mixture of GELU experts in place of the
            MLP; it and the other MoE keys (``top_k``, ``moe_every``,
            ``first_dense_layers``, ``moe_ffn_hidden``, ``shared_experts``,
            ``capacity_factor``, ``aux_loss_coef``, ``routing``) are
            :data:`simulator.nn.moe.MOE_KEYS`; ``experts = 0`` is the dense GPT.
    """

    kind: ClassVar[str] = "gpt"
    layers: int = field(default=2, metadata=size("transformer layers L"))
    hidden: int = field(default=64, metadata=size("hidden size h", "max_width"))
    heads: int = field(default=4, metadata=size("attention heads a"))
    seq_len: int = field(default=32, metadata=size("sequence length s", "max_width"))
    vocab: int = field(default=64, metadata=size("the tokenizer's words", "max_width"))
    make_vocab_size_divisible_by: int = field(
        default=128, metadata=size("the vocabulary is padded to a multiple of this")
    )
    ffn_mult: int = field(
        default=4,
        metadata={"doc": "MLP inner size over hidden", "range": Range(lo=1, hi=64, integer=True)},
    )
    dropout: float = field(
        default=0.0,
        metadata={"doc": "drop probability", "range": Range(lo=0, hi=1, hi_open=True)},
    )
    dtype: str = field(default="float64", metadata=DTYPE)
    data: str = field(
        default="synthetic", metadata={"doc": "synthetic (bigram rule) or text", "choices": DATA}
    )
    init_std: float = field(
        default=0.02,
        metadata={"doc": "standard deviation of the initial weights", "range": INIT_STD},
    )
    attention: str = field(
        default="materialised", metadata={"doc": "attention kernel", "choices": KERNELS}
    )
    experts: int = moe_field("experts")
    top_k: int = moe_field("top_k")
    moe_every: int = moe_field("moe_every")
    first_dense_layers: int = moe_field("first_dense_layers")
    moe_ffn_hidden: int = moe_field("moe_ffn_hidden")
    shared_experts: int = moe_field("shared_experts")
    capacity_factor: float = moe_field("capacity_factor")
    aux_loss_coef: float = moe_field("aux_loss_coef")
    routing: str = moe_field("routing")

    def __post_init__(self) -> None:
        check_fields(self)  # the rules of the [model] table (raises ConfigError)
        if self.hidden % self.heads:
            raise ConfigError(
                f"GPTConfig: hidden {self.hidden} does not divide into {self.heads} heads",
                "hidden",
                f"a multiple of heads = {self.heads}",
            )
        self.check_data("GPTConfig")
        check_moe(self)

    def build(self, seed: int, numerics: bool) -> Model:
        """Embedding, transformer layers and head, from the seed (or shapes only)."""
        if numerics and self.dtype not in NUMPY_DTYPES:
            raise ValueError(
                f"GPT dtype {self.dtype!r} is shape-only; numerics need float64 or float32"
            )
        rng = rng_for(seed, 0) if numerics else None
        embedding = Embedding.create(
            "embedding",
            self.vocab,
            self.seq_len,
            self.hidden,
            self.dropout,
            rng,
            self.dtype,
            self.init_std,
            divisible_by=self.make_vocab_size_divisible_by,
        )
        blocks: list[Layer] = [embedding]
        moe = moe_spec(self, self.ffn_mult * self.hidden, gated=False, seed=seed)
        for i in range(self.layers):
            blocks.append(
                TransformerLayer.create(
                    i,
                    self.hidden,
                    self.heads,
                    self.ffn_mult,
                    self.dropout,
                    self.layers,
                    rng,
                    self.dtype,
                    self.init_std,
                    self.attention,
                    moe if is_moe_layer(self, i) else None,
                )
            )
        blocks.append(Head.create("head", embedding.weight, rng, self.dtype, embedding.vocabulary))
        return Model("gpt", blocks, CrossEntropyLoss(), self.dtype, ends=(1, 1))
