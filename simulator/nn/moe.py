"""A mixture-of-experts layer in place of the transformer's MLP.

Every ``moe_every``-th transformer layer (after ``first_dense_layers`` dense
ones) replaces its MLP by ``experts`` MLPs of which each token uses
``top_k``, chosen by a router (Shazeer et al. 2017; Lepikhin et al. 2020,
"GShard"; Fedus et al. 2021, "Switch Transformers"; Jiang et al. 2024,
"Mixtral of Experts", sec. 2.1)::

    y = sum_{e in top_k(p(x))} p_e(x) E_e(x)  [+ S(x)],    p(x) = softmax(x W_r)

with ``shared_experts`` MLPs ``S`` that every token goes through (Dai et al.
2024, "DeepSeekMoE", sec. 3.2; DeepSeek-AI 2024, "DeepSeek-V3 Technical
Report", sec. 2.1.2). The router, the capacity factor and the load-balancing
loss are :mod:`simulator.nn.routing`'s; the experts and how their outputs
combine, :mod:`simulator.nn.experts`'. The layer is real numpy with an
explicit forward, input gradient (B) and weight gradient (W), like every
other layer (docs/design.md, key decision 1).

Per token the layer computes ``top_k`` experts' MLPs instead of one: its
parameters grow with ``experts``, its FLOPs with ``top_k``. The *active*
parameters of a model count ``top_k`` routed experts per MoE layer (and the
router and shared experts), which is how Mixtral 8x7B has 46.7 billion
parameters of which 12.9 billion act on each token
(:mod:`simulator.nn.accounting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ops
from ..errors import ConfigError
from ..ranges import Range
from .combinators import Sequential
from .experts import (
    combine,
    combine_backward,
    dispatch,
    experts_backward_input,
    experts_backward_weight,
    experts_forward,
    undispatch,
)
from .layers import GELU, Layer, Linear, SwiGLU, init_normal
from .param import Param
from .routing import ROUTINGS, RouterSpec, route, route_backward, route_weight, routing_check

_COUNT = Range(lo=0, hi=1e6, integer=True)

#: The ``[model]`` keys of a mixture of experts, shared by GPT and Llama: name ->
#: (default, metadata). :func:`moe_field` turns one into a dataclass field.
MOE_KEYS: dict[str, tuple[Any, dict[str, Any]]] = {
    "experts": (0, {"doc": "routed experts per MoE layer; 0 = a dense model", "range": _COUNT}),
    "top_k": (
        2,
        {"doc": "experts each token is routed to", "range": Range(lo=1, hi=1e6, integer=True)},
    ),
    "moe_every": (
        1,
        {
            "doc": "every n-th layer (after first_dense_layers) is MoE",
            "range": Range(lo=1, hi=1e6, integer=True),
        },
    ),
    "first_dense_layers": (0, {"doc": "leading layers that keep the dense MLP", "range": _COUNT}),
    "moe_ffn_hidden": (
        0,
        {"doc": "an expert's inner size f; 0 = the dense MLP's", "range": _COUNT},
    ),
    "shared_experts": (
        0,
        {"doc": "experts every token goes through (DeepSeekMoE)", "range": _COUNT},
    ),
    "capacity_factor": (
        0.0,
        {
            "doc": "tokens an expert takes, over the mean; 0 = dropless",
            "range": Range(lo=0, hi=1e6),
        },
    ),
    "aux_loss_coef": (
        0.01,
        {
            "doc": "coefficient of the load-balancing loss (Switch Transformer eq. 4)",
            "range": Range(lo=0, hi=1e6),
        },
    ),
    "routing": (
        "uniform",
        {
            "doc": f"shape-only routing: {' or '.join(ROUTINGS)} (numerics: the router decides)",
            "check": routing_check,
        },
    ),
}


def moe_field(name: str) -> Any:
    """The dataclass field of the MoE key ``name`` (:data:`MOE_KEYS`)."""
    default, metadata = MOE_KEYS[name]
    return field(default=default, metadata=metadata)


def check_moe(config: Any) -> None:
    """Raise :class:`~simulator.errors.ConfigError` for MoE keys that do not fit
    together (each key's own rule is checked by ``check_fields``, :data:`MOE_KEYS`)."""
    owner = type(config).__name__
    if config.experts and config.top_k > config.experts:
        raise ConfigError(
            f"{owner}: top_k = {config.top_k} is more than the {config.experts} experts; "
            "choose top_k <= experts",
            "top_k",
            f"at most experts = {config.experts}",
        )
    if not config.experts and config.shared_experts:
        raise ConfigError(
            f"{owner}: shared_experts needs routed experts too; set experts > 0",
            "shared_experts",
            "0 for a dense model",
        )


def is_moe_layer(config: Any, index: int) -> bool:
    """Whether layer ``index`` (from 0) is a mixture of experts: ``experts > 0``, past
    ``first_dense_layers``, and every ``moe_every``-th from there (Megatron-Core's
    ``moe_layer_freq``, which makes the first of each group the MoE one)."""
    first = config.first_dense_layers
    return bool(config.experts) and index >= first and (index - first) % config.moe_every == 0


def moe_layers(config: Any) -> int:
    """How many of the model's layers are MoE."""
    return sum(is_moe_layer(config, i) for i in range(config.layers))


@dataclass(frozen=True)
class MoESpec:
    """A MoE layer's sizes: routing (:class:`RouterSpec`), ``hidden``, an expert's inner
    size ``ffn``, ``shared`` shared experts and whether the experts are SwiGLU."""

    router: RouterSpec
    hidden: int
    ffn: int
    shared: int
    gated: bool

    @property
    def fc1_width(self) -> int:
        """Columns of an expert's first GEMM: ``2f`` for SwiGLU, ``f`` for GELU."""
        return (2 if self.gated else 1) * self.ffn


def moe_spec(config: Any, ffn: int, gated: bool, seed: int) -> MoESpec:
    """The spec of a model's MoE layers; ``ffn`` is the dense MLP's inner size."""
    router = RouterSpec(
        config.experts,
        config.top_k,
        config.capacity_factor,
        config.aux_loss_coef,
        config.routing,
        seed,
    )
    return MoESpec(
        router, config.hidden, config.moe_ffn_hidden or ffn, config.shared_experts, gated
    )


class Expert:
    """One expert's two weights (an MLP without biases, :mod:`simulator.nn.experts`)."""

    def __init__(self, name: str, fc1: Param, fc2: Param) -> None:
        self.name, self.fc1, self.fc2 = name, fc1, fc2

    def parameters(self) -> list[Param]:
        return [self.fc1, self.fc2]


class MoE(Layer):
    """The layer of the module docstring: router, experts, optional shared experts.

    Attributes:
        spec: its sizes and routing.
        router: the router's weight ``(h, E)``.
        experts: every routed expert (their order is the experts' numbers).
        shared: the shared experts as one MLP of ``shared x f`` units, or None.
    """

    def __init__(
        self,
        name: str,
        spec: MoESpec,
        router: Param,
        experts: list[Expert],
        shared: Sequential | None,
    ) -> None:
        self.name, self.spec, self.router, self.experts, self.shared = (
            name, spec, router, experts, shared
        )  # fmt: skip

    @classmethod
    def create(
        cls,
        name: str,
        spec: MoESpec,
        rng: np.random.Generator | None,
        dtype: str,
        std: float,
        resid: float,
    ) -> MoE:
        """Weights ``N(0, std^2)``, the second GEMMs ``N(0, resid^2)`` (as the MLP's)."""
        h, f, f1 = spec.hidden, spec.ffn, spec.fc1_width
        router = Param(
            f"{name}.router.weight", init_normal(rng, (h, spec.router.experts), std, dtype)
        )
        experts = [
            Expert(
                f"{name}.experts.{e}",
                Param(f"{name}.experts.{e}.fc1.weight", init_normal(rng, (h, f1), std, dtype)),
                Param(f"{name}.experts.{e}.fc2.weight", init_normal(rng, (f, h), resid, dtype)),
            )
            for e in range(spec.router.experts)
        ]
        shared = None
        if spec.shared:
            width = spec.shared * f
            shared = Sequential(
                f"{name}.shared",
                [
                    Linear.create(
                        f"{name}.shared.fc1",
                        h,
                        (2 if spec.gated else 1) * width,
                        rng,
                        dtype,
                        False,
                        std,
                    ),
                    SwiGLU() if spec.gated else GELU(),
                    Linear.create(f"{name}.shared.fc2", width, h, rng, dtype, False, resid),
                ],
            )
        return cls(name, spec, router, experts, shared)

    def inactive_parameters(self) -> int:
        """Parameters of the ``E - top_k`` routed experts a token does not go through."""
        idle = self.spec.router.experts - self.spec.router.top_k
        return idle * sum(p.size for p in self.experts[0].parameters())

    def parameters(self) -> list[Param]:
        own = [self.router, *(p for e in self.experts for p in e.parameters())]
        return own + (self.shared.parameters() if self.shared is not None else [])

    @property
    def fc1(self) -> list[Param]:
        return [e.fc1 for e in self.experts]

    @property
    def fc2(self) -> list[Param]:
        return [e.fc2 for e in self.experts]

    def forward(self, x: Any) -> tuple[Any, Any]:
        b, s, h = x.shape
        tokens = x.reshape(b * s, h)
        name, spec = self.name, self.spec
        routed, rctx = route(spec.router, self.router.value, tokens, name)
        rows = dispatch(tokens, routed, name)
        y, ectx = experts_forward(
            rows, routed.sizes, self.fc1, self.fc2, spec.gated, f"{name}.experts"
        )
        out, cctx = combine(y, routed, name)
        sctx = None
        if self.shared is not None:
            sy, sctx = self.shared.forward(tokens)
            out = ops.add(out, sy, name=f"{name}.shared.add")
        return out.reshape(b, s, h), (rctx, ectx, cctx, sctx)

    def backward_input(self, dy: Any, ctx: Any) -> tuple[Any, Any]:
        rctx, ectx, cctx, sctx = ctx
        b, s, h = dy.shape
        dout = dy.reshape(b * s, h)
        name, spec = self.name, self.spec
        routed = cctx[1]
        drows, dgates = combine_backward(dout, cctx, name)
        dx_rows, ewctx = experts_backward_input(
            drows, ectx, self.fc1, self.fc2, spec.gated, f"{name}.experts"
        )
        dx = undispatch(dx_rows, routed, name)
        dxr, rwctx = route_backward(spec.router, self.router.value, dgates, rctx, name)
        dx = ops.add(dx, dxr, name=f"{name}.router.dx.add")
        swctx = None
        if self.shared is not None:
            dxs, swctx = self.shared.backward_input(dout, sctx)
            dx = ops.add(dx, dxs, name=f"{name}.shared.dx.add")
        return dx.reshape(b, s, h), (rwctx, ewctx, swctx)

    def backward_weight(self, wctx: Any) -> None:
        rwctx, ewctx, swctx = wctx
        self.router.accumulate(route_weight(rwctx, self.name))
        experts_backward_weight(ewctx, self.fc1, self.fc2, f"{self.name}.experts")
        if self.shared is not None:
            self.shared.backward_weight(swctx)
