"""Named models from the papers: ``[model] name = "llama3-70b"`` and ``plan --model NAME``.

Three families:

* ``gpt3-*``: the eight models of Brown et al. 2020, "Language Models are
  Few-Shot Learners", Table 2.1 (layers, d_model, heads, d_head, batch size in
  tokens), with a sequence of 2048 tokens. Two rows of that table do not
  multiply out: GPT-3 XL lists 24 heads of 128 for d_model = 2048, and GPT-3
  13B lists d_model = 5140 for 40 heads of 128. We keep d_head = 128 and
  d_model, so XL has 16 heads, and take 13B's d_model as 40 x 128 = 5120.
  The table's batch sizes, 0.5M to 3.2M tokens, are rounded; in sequences
  of 2048 tokens they are 256 (2^19 tokens) to 1536 (3.15M tokens).
* ``megatron-*``: the ten rows of Narayanan et al. 2021, "Efficient
  Large-Scale Language Model Training on GPU Clusters Using Megatron-LM"
  (SC21), Table 1 (weak scaling from 1.7B to 1T parameters), with the
  tensor- and pipeline-parallel sizes, GPU count and batch they ran, and the
  fraction of the A100's peak they reached.
* ``llama2-*`` and ``llama3-*``: Touvron et al. 2023, "Llama 2: Open
  Foundation and Fine-Tuned Chat Models", Table 1 and sec. 2.2 (sequences of
  4,096 tokens, batches of 4M tokens, RoPE base 10,000), and Llama Team 2024,
  "The Llama 3 Herd of Models", Table 3 (layers, model dimension, FFN
  dimension, heads, key-value heads, a vocabulary of 128,000 + 256 special
  tokens) and sec. 3.4 (sequences of 8,192 tokens, a final batch of 16M
  tokens, RoPE base 500,000), with the released configurations. Llama 3
  405B's layout is Table 4's at 16,384 H100s (tensor 8, pipeline 16, data
  128; 41% of the BF16 peak); the paper gives no batch for 8B and 70B, which
  take 405B's.

* ``mixtral-8x7b`` and ``mixtral-8x22b``: Jiang et al. 2024, "Mixtral of
  Experts", Table 1 and sec. 2.1, with the released configurations: Llama
  layers whose MLP is a mixture of 8 SwiGLU experts, 2 per token, RoPE base
  1,000,000, contexts of 32,768 and 65,536 tokens. The paper gives no training
  batch; they take Llama 2's 4M tokens. 8x7B has 46,702,792,704 parameters,
  12,879,925,248 active per token (embeddings and head included).
* ``deepseek-v3-like``: the shapes of DeepSeek-AI 2024, "DeepSeek-V3
  Technical Report", sec. 4.2: 61 layers of hidden size 7,168 and 128 heads,
  the first 3 with a dense MLP of 18,432, the other 58 with 256 routed
  experts of 2,048 (8 per token) and 1 shared expert, a vocabulary of
  129,280, sequences of 4,096 tokens and the final batch of 15,360
  sequences. **Multi-head latent attention is left out**: the layers use
  plain multi-head attention (128 key-value heads of 56), and there is no
  multi-token-prediction module, so its 671B parameters do not come out
  (this model has 672,149,632,000, 38,675,510,272 active per token, its
  attention larger than MLA's low-rank projections). The routing is the
  Switch-style softmax and top-k of :mod:`simulator.nn.routing`, not
  DeepSeek-V3's sigmoid gates and auxiliary-loss-free bias.

The GPT models use Megatron-LM's padded vocabulary of 51,200 (a multiple of
128 x 8, so any tp up to 8 divides it; GPT-2's BPE has 50,257 tokens), bf16,
dropout 0.1, and count parameters by Megatron-LM's eq. 2. The Llama models
are bf16 with FlashAttention; their parameter counts are the published ones
exactly (Llama 3 8B: 8,030,261,248).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import ScenarioError
from .gpt import GPTConfig
from .llama import LlamaConfig

GPT_SEQ_LEN = 2048
GPT_VOCAB = 51200


@dataclass(frozen=True)
class NamedModel:
    """A published model, and the layout its paper ran it with (if it says).

    Attributes:
        name: the name ``[model] name`` and ``plan --model`` take.
        config: the model, shape-only sized (bf16).
        global_batch: sequences per step in the paper.
        source: paper and table.
        tp, pp, gpus: the published tensor- and pipeline-parallel sizes and
            GPU count, or None.
        peak_fraction: the published fraction of peak FLOP/s (MFU), or None.
    """

    name: str
    config: Any
    global_batch: int
    source: str
    tp: int | None = None
    pp: int | None = None
    gpus: int | None = None
    peak_fraction: float | None = None


def _gpt(layers: int, hidden: int, heads: int) -> GPTConfig:
    return GPTConfig(
        layers=layers,
        hidden=hidden,
        heads=heads,
        seq_len=GPT_SEQ_LEN,
        vocab=GPT_VOCAB,
        dropout=0.1,
        dtype="bf16",
    )


def _llama(
    layers: int, hidden: int, heads: int, kv: int, ffn: int, vocab: int, seq: int, theta: float
) -> LlamaConfig:
    return LlamaConfig(
        layers=layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv,
        ffn_hidden=ffn,
        vocab=vocab,
        seq_len=seq,
        rope_theta=theta,
        dtype="bf16",
    )


_BROWN = "Brown et al. 2020, Table 2.1"
_NARAYANAN = "Narayanan et al. 2021, Table 1"
_LLAMA2 = "Touvron et al. 2023 (Llama 2), Table 1"
_LLAMA3 = "Llama Team 2024 (The Llama 3 Herd of Models), Tables 3 and 4"
_MIXTRAL = "Jiang et al. 2024 (Mixtral of Experts), Table 1"
_DEEPSEEK = "DeepSeek-AI 2024 (DeepSeek-V3 Technical Report), sec. 4.2; without MLA"

# name, layers, d_model, heads, batch in sequences (Brown et al. 2020, Table 2.1:
# 0.5M, 0.5M, 0.5M, 1M, 1M, 2M, 2M and 3.2M tokens)
_GPT3 = [
    ("gpt3-small", 12, 768, 12, 256),
    ("gpt3-medium", 24, 1024, 16, 256),
    ("gpt3-large", 24, 1536, 16, 256),
    ("gpt3-xl", 24, 2048, 16, 512),
    ("gpt3-2.7b", 32, 2560, 32, 512),
    ("gpt3-6.7b", 32, 4096, 32, 1024),
    ("gpt3-13b", 40, 5120, 40, 1024),
    ("gpt3-175b", 96, 12288, 96, 1536),
]
# name, heads, hidden, layers, t, p, GPUs, batch, fraction of peak (Narayanan et al. 2021, Table 1)
_MEGATRON = [
    ("megatron-1.7b", 24, 2304, 24, 1, 1, 32, 512, 0.44),
    ("megatron-3.6b", 32, 3072, 30, 2, 1, 64, 512, 0.44),
    ("megatron-7.5b", 32, 4096, 36, 4, 1, 128, 512, 0.46),
    ("megatron-18.4b", 48, 6144, 40, 8, 1, 256, 1024, 0.43),
    ("megatron-39.1b", 64, 8192, 48, 8, 2, 512, 1536, 0.44),
    ("megatron-76.1b", 80, 10240, 60, 8, 4, 1024, 1792, 0.45),
    ("megatron-145.6b", 96, 12288, 80, 8, 8, 1536, 2304, 0.47),
    ("megatron-310.1b", 128, 16384, 96, 8, 16, 1920, 2160, 0.50),
    ("megatron-529.6b", 128, 20480, 105, 8, 35, 2520, 2520, 0.52),
    ("megatron-1t", 160, 25600, 128, 8, 64, 3072, 3072, 0.52),
]
# Llama 2: 4M-token batches of 4,096-token sequences; Llama 3: 16M-token batches of
# 8,192-token sequences (module docstring)
_LLAMAS = [
    NamedModel("llama2-7b", _llama(32, 4096, 32, 32, 11008, 32000, 4096, 1e4), 1024, _LLAMA2),
    NamedModel("llama2-70b", _llama(80, 8192, 64, 8, 28672, 32000, 4096, 1e4), 1024, _LLAMA2),
    NamedModel("llama3-8b", _llama(32, 4096, 32, 8, 14336, 128256, 8192, 5e5), 2048, _LLAMA3),
    NamedModel("llama3-70b", _llama(80, 8192, 64, 8, 28672, 128256, 8192, 5e5), 2048, _LLAMA3),
    NamedModel(
        "llama3-405b",
        _llama(126, 16384, 128, 8, 53248, 128256, 8192, 5e5),
        2048,
        _LLAMA3,
        tp=8,
        pp=16,
        gpus=16384,
        peak_fraction=0.41,
    ),
]


def _mixtral(layers: int, hidden: int, heads: int, ffn: int, vocab: int, seq: int) -> LlamaConfig:
    return replace(_llama(layers, hidden, heads, 8, ffn, vocab, seq, 1e6), experts=8, top_k=2)


# DeepSeek-V3's shapes (module docstring), its attention plain multi-head attention
_DEEPSEEK_V3 = replace(
    _llama(61, 7168, 128, 128, 18432, 129280, 4096, 1e4),
    experts=256,
    top_k=8,
    shared_experts=1,
    moe_ffn_hidden=2048,
    first_dense_layers=3,
)
_MOES = [
    NamedModel("mixtral-8x7b", _mixtral(32, 4096, 32, 14336, 32000, 32768), 128, _MIXTRAL),
    NamedModel("mixtral-8x22b", _mixtral(56, 6144, 48, 16384, 32768, 65536), 64, _MIXTRAL),
    NamedModel("deepseek-v3-like", _DEEPSEEK_V3, 15360, _DEEPSEEK),
]

NAMED_MODELS: dict[str, NamedModel] = {
    **{
        name: NamedModel(name, _gpt(layers, hidden, heads), batch, _BROWN)
        for name, layers, hidden, heads, batch in _GPT3
    },
    **{
        name: NamedModel(name, _gpt(layers, hidden, heads), batch, _NARAYANAN, t, p, gpus, frac)
        for name, heads, hidden, layers, t, p, gpus, batch, frac in _MEGATRON
    },
    **{m.name: m for m in _LLAMAS},
    **{m.name: m for m in _MOES},
}


def named_model(name: str) -> NamedModel:
    """The named model ``name``; a one-line error lists the names otherwise."""
    if name not in NAMED_MODELS:
        raise ScenarioError(
            f"unknown model {name!r}; choose one of: {', '.join(NAMED_MODELS)} "
            "(python -m simulator models lists them)"
        )
    return NAMED_MODELS[name]
