"""Llama: the decoder-only transformer of 2023-2024, as pipeline-splittable blocks.

The block is GPT's pre-norm transformer layer (:mod:`simulator.nn.transformer`)
with today's parts (Touvron et al. 2023, "LLaMA", sec. 2.2; Llama Team 2024,
"The Llama 3 Herd of Models", sec. 3.2):

    x1 = x  + proj(attention(rope(q), rope(k), v))   with q, k, v = qkv(rmsnorm(x))
    y  = x1 + fc2(silu(gate) * up)                   with [gate | up] = fc1(rmsnorm(x1))

* RMSNorm instead of layer norm (:class:`~simulator.nn.norm.RMSNorm`);
* grouped-query attention, ``heads`` query heads over ``kv_heads`` key and
  value heads (Ainslie et al. 2023), with rotary position embeddings on the
  queries and keys (Su et al. 2021) and no position table;
* a SwiGLU MLP of ``ffn_hidden`` units, any integer (Llama 3 405B: 53,248 for
  ``h = 16,384``, 3.25 h), its gate and value from one GEMM
  (:class:`~simulator.nn.layers.SwiGLU`);
* no biases, no dropout, and an output layer of its own (untied embeddings);
  each is an option;
* the attention kernel is FlashAttention by default.

The model is ``[Embedding, LlamaLayer x layers, Head]``, exactly as GPT's
blocks, so every strategy runs it, and its counts are derived in
:mod:`simulator.nn.accounting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..keys import check_fields
from ..ops.arrays import NUMPY_DTYPES
from ..ranges import Range
from .attention import KERNELS, AttentionCore
from .config import ModelConfig
from .cross_entropy import CrossEntropyLoss
from .data import rng_for
from .dropout import Dropout
from .embedding import Embedding, OutputLogits, TiedLogits, padded_table
from .gpt import INIT_STD, Head
from .layers import Layer, Linear, SwiGLU, init_normal
from .models import FLOAT_DTYPES, Model
from .moe import MoE, MoESpec, check_moe, is_moe_layer, moe_field, moe_spec
from .norm import RMSNorm
from .param import Param
from .text import DATA, LanguageModelData
from .transformer import TransformerLayer

POSITIVE = Range(lo=1, integer=True)


def _key(doc: str, **rules: Any) -> dict[str, Any]:
    return {"doc": doc, **rules}


def llama_layer(
    index: int, config: LlamaConfig, rng: np.random.Generator | None, moe: MoESpec | None = None
) -> TransformerLayer:
    """Layer ``index`` of a Llama model: weights ``N(0, std^2)``, the two projections
    into the residual stream ``std / sqrt(2 L)`` (Megatron-LM's scaled initialisation
    of output layers), norms the identity, biases zero; with ``moe``, a mixture of
    SwiGLU experts in place of the MLP (Mixtral, :mod:`simulator.nn.moe`)."""
    c = config
    name = f"layer{index}"
    d = c.hidden // c.heads
    dtype, std = c.dtype, c.init_std
    resid = std / math.sqrt(2 * c.layers)
    qkv_width = (c.heads + 2 * c.kv_heads) * d
    # the weights are drawn in the order of the layer's parts
    ln1 = RMSNorm(f"{name}.ln1", c.hidden, rng, dtype, c.norm_eps)
    qkv = Linear.create(f"{name}.attn.qkv", c.hidden, qkv_width, rng, dtype, c.bias, std)
    core = AttentionCore(
        f"{name}.attn.core",
        c.heads,
        d,
        Dropout(c.dropout, index, "attention_probs"),
        kv_heads=c.kv_heads,
        rotary=c.rope_theta,
        kernel=c.attention,
    )
    proj = Linear.create(f"{name}.attn.proj", c.heads * d, c.hidden, rng, dtype, c.bias, resid)
    ln2 = RMSNorm(f"{name}.ln2", c.hidden, rng, dtype, c.norm_eps)
    fc1 = fc2 = mixture = None
    if moe is not None:
        mixture = MoE.create(f"{name}.moe", moe, rng, dtype, std, resid)
    else:
        fc1 = Linear.create(f"{name}.mlp.fc1", c.hidden, 2 * c.ffn_hidden, rng, dtype, c.bias, std)
        fc2 = Linear.create(f"{name}.mlp.fc2", c.ffn_hidden, c.hidden, rng, dtype, c.bias, resid)
    return TransformerLayer(
        name,
        ln1,
        qkv,
        core,
        proj,
        Dropout(c.dropout, index, "attention_out"),
        ln2,
        fc1,
        fc2,
        Dropout(c.dropout, index, "mlp_out"),
        activation=SwiGLU(),
        moe=mixture,
    )


@dataclass(frozen=True)
class LlamaConfig(LanguageModelData, ModelConfig):
    """A Llama-style model (module docstring); ``[model] kind = "llama"``.

    Attributes:
        layers, hidden, heads, seq_len, vocab: L, h, a, s, V as for GPT.
        kv_heads: key and value heads (grouped-query attention); ``heads`` is
            multi-head attention, 1 multi-query.
        ffn_hidden: the SwiGLU MLP's inner size ``f``, any positive integer.
        tie_embeddings: the output layer uses the token table (GPT) instead of
            a table of its own (Llama).
        attention: ``flash`` (one fused kernel) or ``materialised``.
        rope_theta: RoPE's base (Llama 3: 500,000; Llama 2: 10,000).
        norm_eps: RMSNorm's epsilon.
        bias: biases in the linear layers (Llama has none).
        dropout: drop probability of every dropout (Llama: 0).
        make_vocab_size_divisible_by, dtype, data, init_std: as for GPT.
        experts: routed experts of a mixture of SwiGLU experts in place of the
            MLP; it and the other MoE keys (``top_k``, ``moe_every``,
            ``first_dense_layers``, ``moe_ffn_hidden``, ``shared_experts``,
            ``capacity_factor``, ``aux_loss_coef``, ``routing``) are
            :data:`simulator.nn.moe.MOE_KEYS`; ``experts = 0`` is the dense Llama.
    """

    kind: ClassVar[str] = "llama"
    layers: int = field(default=2, metadata=_key("transformer layers", range=POSITIVE))
    hidden: int = field(
        default=64, metadata=_key("hidden size h", range=POSITIVE, limit="max_width")
    )
    heads: int = field(default=4, metadata=_key("query heads a", range=POSITIVE))
    kv_heads: int = field(
        default=2, metadata=_key("key-value heads (grouped-query attention)", range=POSITIVE)
    )
    ffn_hidden: int = field(
        default=160,
        metadata=_key(
            "SwiGLU inner size f (an integer, not a multiple)", range=POSITIVE, limit="max_width"
        ),
    )
    vocab: int = field(
        default=64, metadata=_key("the tokenizer's words", range=POSITIVE, limit="max_width")
    )
    seq_len: int = field(
        default=32, metadata=_key("sequence length s", range=POSITIVE, limit="max_width")
    )
    tie_embeddings: bool = field(
        default=False, metadata=_key("the output layer shares the token table")
    )
    attention: str = field(default="flash", metadata=_key("attention kernel", choices=KERNELS))
    rope_theta: float = field(
        default=500_000.0, metadata=_key("RoPE base theta", range=Range(lo=0, lo_open=True))
    )
    norm_eps: float = field(
        default=1e-5, metadata=_key("RMSNorm epsilon", range=Range(lo=0, hi=1, lo_open=True))
    )
    bias: bool = field(default=False, metadata=_key("biases in the linear layers"))
    dropout: float = field(
        default=0.0,
        metadata=_key("dropout probability", range=Range(lo=0, hi=1, hi_open=True)),
    )
    make_vocab_size_divisible_by: int = field(
        default=128, metadata=_key("Megatron-LM's vocabulary padding unit", range=POSITIVE)
    )
    dtype: str = field(default="float64", metadata=_key("element type", choices=FLOAT_DTYPES))
    data: str = field(default="synthetic", metadata=_key("training data", choices=DATA))
    init_std: float = field(
        default=0.02, metadata=_key("standard deviation of the initial weights", range=INIT_STD)
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
                f"LlamaConfig: hidden {self.hidden} does not divide into {self.heads} heads",
                "hidden",
                f"a multiple of heads = {self.heads}",
            )
        if self.heads % self.kv_heads:
            raise ConfigError(
                f"LlamaConfig: heads {self.heads} do not group over kv_heads {self.kv_heads}; "
                "kv_heads must divide heads",
                "kv_heads",
                f"a divisor of heads = {self.heads}",
            )
        if (self.hidden // self.heads) % 2:
            raise ConfigError(
                f"LlamaConfig: head size hidden/heads = {self.hidden // self.heads} is odd; "
                "rotary embeddings rotate pairs of coordinates, so it must be even",
                "hidden",
                "an even head size",
            )
        self.check_data("LlamaConfig")
        check_moe(self)

    def build(self, seed: int, numerics: bool) -> Model:
        """Embedding, Llama layers and head, from the seed (or shapes only)."""
        if numerics and self.dtype not in NUMPY_DTYPES:
            raise ValueError(
                f"Llama dtype {self.dtype!r} is shape-only; numerics need float64 or float32"
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
            learned_positions=False,
        )
        blocks: list[Layer] = [embedding]
        moe = moe_spec(self, self.ffn_hidden, gated=True, seed=seed)
        blocks += [
            llama_layer(i, self, rng, moe if is_moe_layer(self, i) else None)
            for i in range(self.layers)
        ]
        vocabulary = embedding.vocabulary
        assert vocabulary is not None
        logits: TiedLogits
        if self.tie_embeddings:
            logits = TiedLogits("head.logits", embedding.weight, vocabulary.words, vocabulary)
        else:
            table = init_normal(rng, (self.vocab, self.hidden), self.init_std, self.dtype)
            weight = Param("head.output", padded_table(table, vocabulary.rows()))
            logits = OutputLogits("head.logits", weight, vocabulary.words, vocabulary)
        ln_f = RMSNorm("head.ln_f", self.hidden, rng, self.dtype, self.norm_eps)
        blocks.append(Head("head", ln_f, logits))
        return Model("llama", blocks, CrossEntropyLoss(), self.dtype, ends=(1, 1))
