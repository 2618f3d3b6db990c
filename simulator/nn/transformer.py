"""The GPT-2 transformer layer, assembled from explicit sub-layers.

A pre-LN layer (Radford et al. 2019, "Language Models are Unsupervised
Multitask Learners", sec. 2.3: layer norm moved to the input of each
sub-block) computes

    x1 = x  + dropout(proj(attention_core(qkv(ln1(x)))))
    y  = x1 + dropout(fc2(gelu(fc1(ln2(x1)))))

Every piece is its own layer with its own saved context, so the stash of the
whole layer is exactly what its parts keep (Korthikanti et al. 2022, sec. 4.1,
16-bit bytes): ln1 input 2sbh, qkv input 2sbh, Q K V 6sbh, softmax output
2as^2b, its dropout mask as^2b and output 2as^2b, projection input 2sbh,
dropout mask sbh; ln2 input 2sbh, fc1 input 2sbh, GELU input 8sbh, fc2
input 8sbh, dropout mask sbh -- ``sbh(34 + 5as/h)`` in all. The residual
additions keep nothing.

The Llama block (:mod:`simulator.nn.llama`) is the same layer with other
parts: RMSNorm for the layer norms, a grouped-query core with rotary
embeddings, linear layers without biases, and SwiGLU for GELU, with ``fc1``
computing the gate and the value together.

A mixture of experts (:class:`~simulator.nn.moe.MoE`, ``moe``) may take the
place of ``fc1, activation, fc2``: the MLP branch is then ``ln2, moe, drop2``.

The sub-layers are attributes (``ln1, qkv, core, proj, drop1, ln2, fc1,
activation, fc2, drop2``, ``moe``) so that a tensor-parallel layer can be built from their
shards: ``qkv`` and ``fc1`` split by output columns (whole heads for ``qkv``,
see :func:`simulator.ops.functional.split_heads`), ``proj`` and ``fc2`` by input
rows, the core by heads (Megatron-LM, Shoeybi et al. 2019, sec. 3).
"""

from __future__ import annotations

import math

import numpy as np

from .attention import AttentionCore
from .combinators import Residual, Sequential
from .dropout import Dropout
from .layers import GELU, Layer, Linear
from .moe import MoE, MoESpec
from .norm import LayerNorm


class TransformerLayer(Sequential):
    """One pre-LN GPT-2 layer: an attention residual, then an MLP residual.

    Forward GEMM FLOPs for ``b`` sequences of ``s`` tokens (Korthikanti et al.
    2022, appendix A): QKV ``6bsh^2``, scores and values ``4bs^2h``, projection
    ``2bsh^2``, MLP ``4 * ffn_mult * bsh^2`` (``16bsh^2`` for the usual 4),
    ``24bsh^2 + 4bs^2h`` in all; backward twice that.

    Set ``selective`` to recompute the attention core in backward (Korthikanti
    et al. 2022, sec. 4.2): the layer then stashes ``34sbh`` bytes in 16-bit.
    """

    def __init__(
        self,
        name: str,
        ln1: Layer,
        qkv: Linear,
        core: AttentionCore,
        proj: Linear,
        drop1: Dropout,
        ln2: Layer,
        fc1: Linear | None,
        fc2: Linear | None,
        drop2: Dropout,
        activation: Layer | None = None,
        moe: Layer | None = None,
    ) -> None:
        self.ln1, self.qkv, self.core, self.proj, self.drop1 = ln1, qkv, core, proj, drop1
        self.ln2, self.fc1, self.fc2, self.drop2 = ln2, fc1, fc2, drop2
        self.activation = GELU() if activation is None else activation
        self.moe = moe
        attention = Sequential(f"{name}.attn", [ln1, qkv, core, proj, drop1])
        middle = [moe] if moe is not None else [fc1, self.activation, fc2]
        mlp = Sequential(f"{name}.mlp", [ln2, *middle, drop2])
        super().__init__(name, [Residual(attention.name, attention), Residual(mlp.name, mlp)])

    @classmethod
    def create(
        cls,
        index: int,
        hidden: int,
        heads: int,
        ffn_mult: int,
        dropout: float,
        num_layers: int,
        rng: np.random.Generator | None,
        dtype: str,
        std: float = 0.02,
        kernel: str = "materialised",
        moe: MoESpec | None = None,
    ) -> TransformerLayer:
        """Layer ``index`` of ``num_layers``, initialised as GPT-2 is; with ``moe``, a
        mixture of GELU experts in place of the MLP (:mod:`simulator.nn.moe`).

        Weights ``N(0, std^2)``, biases zero, layer norms the identity; the
        two projections that feed the residual stream get ``std / sqrt(2 L)``
        (Radford et al. 2019, sec. 2.3: two residual additions per layer).
        """
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} does not divide into {heads} heads")
        name = f"layer{index}"
        resid_std = std / math.sqrt(2 * num_layers)
        inner = ffn_mult * hidden
        # the weights are drawn in the order of the layer's parts
        ln1 = LayerNorm(f"{name}.ln1", hidden, rng, dtype)
        qkv = Linear.create(f"{name}.attn.qkv", hidden, 3 * hidden, rng, dtype, std=std)
        core = AttentionCore(
            f"{name}.attn.core",
            heads,
            hidden // heads,
            Dropout(dropout, index, "attention_probs"),
            kernel=kernel,
        )
        proj = Linear.create(f"{name}.attn.proj", hidden, hidden, rng, dtype, std=resid_std)
        ln2 = LayerNorm(f"{name}.ln2", hidden, rng, dtype)
        if moe is not None:
            mixture = MoE.create(f"{name}.moe", moe, rng, dtype, std, resid_std)
            fc1 = fc2 = None
        else:
            mixture = None
            fc1 = Linear.create(f"{name}.mlp.fc1", hidden, inner, rng, dtype, std=std)
            fc2 = Linear.create(f"{name}.mlp.fc2", inner, hidden, rng, dtype, std=resid_std)
        return cls(
            name,
            ln1,
            qkv,
            core,
            proj,
            Dropout(dropout, index, "attention_out"),
            ln2,
            fc1,
            fc2,
            Dropout(dropout, index, "mlp_out"),
            moe=mixture,
        )

    @property
    def selective(self) -> bool:
        """Whether the attention core is recomputed in backward (selective recomputation)."""
        return self.core.selective

    @selective.setter
    def selective(self, value: bool) -> None:
        self.core.selective = value
