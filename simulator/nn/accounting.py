"""Closed forms for GPT and Llama: parameters, model FLOPs, and the activations a layer keeps.

The simulator counts by running the layers; these formulas say what the
counts must be, and the tests hold the two equal, exactly. Notation: ``L``
layers, ``h`` hidden, ``a`` query heads, ``kv`` key-value heads and ``k =
kv / a`` (GPT: ``k = 1``), ``d = h / a``, ``f`` the MLP's inner size (GPT:
``ffn_mult h``), ``V`` the padded vocabulary, ``s`` the sequence, ``b``
sequences per micro-batch, ``t`` the tensor-parallel size, ``e`` bytes per
element of the model's dtype.

**Parameters.** A layer's weight matrices are the fused QKV projection, ``h x
(a + 2 kv) d = h^2 (1 + 2k)``, the output projection ``h^2``, and the MLP:
GPT's ``2 h f`` (``8h^2`` for ``f = 4h``), Llama's SwiGLU ``3 h f`` (gate and
value ``h x 2f``, output ``f x h``). Norms add ``2h`` per layer for GPT (gain
and bias, twice) and ``2h`` for Llama (two RMSNorm gains), biases ``h (1 + 2k)
+ h + F + h`` (``F`` the first MLP GEMM's columns) when there are biases.
The embeddings add ``Vh`` (tied) or ``2Vh`` (untied), GPT's position table
``sh``, and the final norm ``2h`` (GPT) or ``h`` (Llama). For GPT this is
Megatron-LM's eq. 2 plus the final layer norm; for Llama::

    P = L (2 h^2 (1 + k) + 3 h f + 2 h) + 2 V h + h

(Llama 3 8B: ``32 (2 * 4096^2 * 1.25 + 3 * 4096 * 14336 + 8192) + 2 * 128256 *
4096 + 4096 = 8,030,261,248``.)

**Mixtures of experts** (:mod:`simulator.nn.moe`). A MoE layer's MLP is a
router, ``h E``, ``E`` experts of ``h f1 + f h`` each (``f1 = 2f`` SwiGLU, ``f``
GELU; no biases) and ``S`` shared experts of the same size. Its *active*
parameters count ``k = top_k`` routed experts instead of ``E``: Mixtral 8x7B
(``L = 32, h = 4096, kv/a = 8/32, f = 14336, E = 8, k = 2, V = 32000``) has
``32 (2 h^2 1.25 + 8 h + 8 * 3 h f + 2h) + 2 V h + h = 46,702,792,704``
parameters, ``12,879,925,248`` of them active per token (Jiang et al. 2024,
Table 1). A token's GEMMs use its active weights, so ``N_gemm`` below counts
``k`` experts, the router and the shared ones.

**Model FLOPs.** Every weight of a GEMM does one multiply-add per token
forward, ``2`` FLOPs, and twice that backward: ``6 N_gemm`` per token, with
``N_gemm = L (h^2 (2 + 2k) + F_mlp h) + V h`` the weights that take part in
GEMMs (the layers' matrices and the output layer, tied or not; ``F_mlp = 2f``
for GPT, ``3f`` for SwiGLU). Attention adds its two ``s x s`` GEMMs, ``4 s h``
per token and layer forward, ``12 L s h`` with backward (counted in full,
causal or not, as Korthikanti et al. 2022, appendix A count them)::

    FLOPs per token = 6 N_gemm + 12 L s h

which is PaLM's ``6N + 12 L H Q T`` (Chowdhery et al. 2022, appendix B) and,
for GPT with ``f = 4h``, Korthikanti et al.'s eq. 7 divided by ``B s``. Full
recomputation adds one forward of every layer, a third of its share.

**Activations a layer keeps** for its backward, per micro-batch and device
(Korthikanti et al. 2022, sec. 4.1 and table 2, extended): see
:func:`layer_stash_bytes`. With the flash kernel the ``s x s`` terms are gone
and the softmax statistics, ``4 a s b / t`` bytes, come in, so the bytes per
token do not depend on the sequence length: doubling ``s`` at a fixed number
of tokens per micro-batch leaves them unchanged. Materialised attention keeps
``a s^2 b`` elements, which per token grow with ``s``.
"""

from __future__ import annotations

from typing import Any

from ..ops.arrays import ITEMSIZE
from .moe import is_moe_layer


def _shape(config: Any) -> dict[str, Any]:
    """The letters of the module docstring for a GPT or Llama config."""
    h, a = config.hidden, config.heads
    llama = getattr(config, "kind", "") == "llama"
    f = config.ffn_hidden if llama else config.ffn_mult * h
    return {
        "L": config.layers,
        "h": h,
        "a": a,
        "kv": getattr(config, "kv_heads", a),
        "d": h // a,
        "f": f,
        "fc1": 2 * f if llama else f,  # the first MLP GEMM's columns
        "mlp": 3 * f if llama else 2 * f,  # the MLP's weights per unit of h
        "V": config.padded_vocab(),
        "s": config.seq_len,
        "llama": llama,
    }


def _moe(config: Any) -> dict[str, int]:
    """A MoE layer's sizes: ``E`` experts, ``k`` per token, ``S`` shared, an expert's
    ``f`` and its first GEMM's columns ``f1`` (zeros for a dense model)."""
    if not getattr(config, "experts", 0):
        return {"E": 0, "k": 0, "S": 0, "f": 0, "f1": 0}
    c = _shape(config)
    f = config.moe_ffn_hidden or c["f"]
    return {
        "E": config.experts,
        "k": config.top_k,
        "S": config.shared_experts,
        "f": f,
        "f1": (2 if c["llama"] else 1) * f,
    }


def _mlp_weights(config: Any, moe: bool, active: bool) -> int:
    """GEMM weights of one layer's MLP: dense, or MoE with all experts (or the ``k``
    active ones), the router and the shared experts."""
    c = _shape(config)
    if not moe:
        return c["mlp"] * c["h"]
    m = _moe(config)
    expert = c["h"] * (m["f1"] + m["f"])
    routed = m["k"] if active else m["E"]
    return c["h"] * m["E"] + (routed + m["S"]) * expert


def _attention_weights(config: Any) -> int:
    c = _shape(config)
    return c["h"] * (c["a"] + 2 * c["kv"]) * c["d"] + c["h"] * c["h"]


def parameters(config: Any, active: bool = False) -> int:
    """Every parameter of a GPT or Llama model (module docstring); with ``active``, the
    ones that act on a token: a MoE layer's ``top_k`` routed experts instead of all
    (with the router and the shared experts), embeddings and head included."""
    c = _shape(config)
    h, kv, d = c["h"], c["kv"], c["d"]
    norms = 2 * h + (0 if c["llama"] else 2 * h)
    biased = getattr(config, "bias", not c["llama"])
    total = 0
    for i in range(c["L"]):
        moe = is_moe_layer(config, i)
        total += _attention_weights(config) + _mlp_weights(config, moe, active) + norms
        if biased:  # the experts have none
            total += (c["a"] + 2 * kv) * d + h + (0 if moe else c["fc1"] + h)
    if c["llama"]:
        tables = (1 if config.tie_embeddings else 2) * c["V"] * h
        return total + tables + h
    return total + c["V"] * h + c["s"] * h + 2 * h


def active_parameters(config: Any) -> int:
    """The parameters that act on one token (:func:`parameters` with ``active``)."""
    return parameters(config, active=True)


def gemm_parameters(config: Any) -> int:
    """``N_gemm``: the weights that take part in a token's GEMMs, the layers' matrices
    (a MoE layer's router, ``top_k`` routed and its shared experts) and the output
    layer's (module docstring)."""
    c = _shape(config)
    layers = sum(
        _attention_weights(config) + _mlp_weights(config, is_moe_layer(config, i), active=True)
        for i in range(c["L"])
    )
    return layers + c["V"] * c["h"]


def model_flops_per_token(config: Any) -> float:
    """Training FLOPs per token, ``6 N_gemm + 12 L s h`` (module docstring)."""
    c = _shape(config)
    return 6 * gemm_parameters(config) + 12 * c["L"] * c["s"] * c["h"]


def layer_forward_flops(config: Any, sequences: int = 1) -> float:
    """Forward GEMM FLOPs of one layer for ``sequences`` sequences:
    ``2 s (h^2 (2 + 2k) + F_mlp h) + 4 s^2 h`` each."""
    c = _shape(config)
    h, s = c["h"], c["s"]
    weights = h * (c["a"] + 2 * c["kv"]) * c["d"] + h * h + c["mlp"] * h
    return sequences * (2 * s * weights + 4 * s * s * h)


def six_nd_ratio(config: Any) -> float:
    """FLOPs per token over ``6 P`` (all parameters): how far the ``6ND`` rule is off."""
    return model_flops_per_token(config) / (6 * parameters(config))


def layer_stash_bytes(
    config: Any,
    micro_batch: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
    precision: str = "bf16",
    cp: int = 1,
    context_parallel: str = "ring",
) -> float:
    """Bytes one transformer layer keeps from forward to backward, per micro-batch of
    ``micro_batch`` sequences, on one tensor-parallel rank (shape-only arrays).

    What each part keeps (``t`` ranks; ``/t*`` only under sequence parallelism;
    ``g`` a linear layer's kept input, ``e`` bytes, or 1 when its GEMMs run in
    FP8 and it keeps the FP8 copy, :mod:`simulator.ops.precision`):

    * the two norms' inputs, ``2 e s b h /t*``;
    * the inputs of QKV and of the first MLP GEMM, ``2 g s b h /t*``;
    * queries, keys and values of the rank's heads, ``e s b d (a/t + 2 kv_t)``
      with ``kv_t = kv/t`` key-value heads (one when they are replicated);
    * the attention output, the output projection's input: ``g s b h / t``;
      with the flash kernel ``e s b h / t`` (the kernel keeps it too, plus
      the projection's FP8 copy under FP8) and the softmax statistics ``4 a
      s b / t``; materialised, the probabilities ``e a s^2 b / t``, and with
      dropout its mask and output, ``(1 + e) a s^2 b / t`` more (none of the
      ``s^2`` terms under selective recomputation);
    * the MLP's activation input, ``e s b F / t`` (``F`` the first GEMM's
      columns: GPT's ``4h``, SwiGLU's ``[gate | up]`` ``2f``), and the second
      GEMM's input ``g s b f / t``;
    * the two residual branches' dropout masks, ``2 s b h /t*`` (with dropout).

    GPT with ``f = 4h``, dropout, 16-bit, no FP8 gives Korthikanti et al.'s
    ``sbh (34 + 5 a s / h)``, ``sbh (10 + 24/t + 5 a s/(h t))`` and ``sbh (34 +
    5 a s/h) / t``. Full recomputation keeps the layer's input, ``e s b h /t*``.

    With context parallelism (``cp`` ranks, :mod:`simulator.parallel.context`)
    a rank keeps all of that for its ``s / cp`` tokens: every term divides by
    ``cp``, except the materialised probabilities, which a rank keeps for the
    blocks of keys it attends: with the balanced chunks at least ``(2 cp + 1)
    n^2`` pairs per head, ``n = s / (2 cp)`` (the all-gather variant's count; the
    ring's diagonal step keeps ``n^2`` more), and Ulysses' ``s^2 / cp`` (its
    ``a / cp`` heads over the whole sequence). Ulysses also keeps its heads'
    output besides the sequence-split one, which this count leaves out.
    """
    c = _shape(config)
    e = ITEMSIZE[config.dtype]
    b, h, a, t = micro_batch, c["h"], c["a"], tp
    whole = c["s"]
    s = whole // cp  # the tokens of every sequence a rank holds
    split = t if sequence_parallel else 1
    sbh = s * b * h
    if recompute == "full":
        return e * sbh / split
    g = 1 if precision == "fp8" else e
    mask = 1 if config.dropout > 0 else 0
    kv_t = c["kv"] // t if c["kv"] % t == 0 else 1
    flash = config.attention == "flash"
    total = 2 * e * sbh / split + 2 * g * sbh / split
    total += e * s * b * c["d"] * (a // t + 2 * kv_t)
    if flash:
        total += e * sbh / t + (sbh / t if precision == "fp8" else 0) + 4 * a * s * b / t
    else:
        total += g * sbh / t
        if recompute != "selective" and cp == 1:
            total += (a / t) * s * s * b * (e + mask * (1 + e))
        elif recompute != "selective":
            pairs = _pairs_kept(whole, cp, context_parallel)
            total += (a / t) * pairs * b * (e + mask * (1 + e))
    total += e * s * b * c["fc1"] / t + g * s * b * c["f"] / t
    total += 2 * mask * sbh / split
    return total


def _pairs_kept(s: int, cp: int, context_parallel: str) -> float:
    """Query-key pairs per head whose probabilities one of ``cp > 1`` ranks keeps
    (materialised kernel; :func:`layer_stash_bytes`)."""
    if context_parallel == "ulysses":
        return s * s / cp
    n = s / (2 * cp)
    return (2 * cp + 1) * n * n
