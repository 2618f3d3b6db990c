"""The router of a mixture of experts: which token goes to which experts, and the
load-balancing loss.

A router is a linear layer from the hidden state to one logit per expert, a
softmax and a top-k (Shazeer et al. 2017, "Outrageously Large Neural
Networks", eq. 3-5; Fedus et al. 2021, "Switch Transformers", sec. 2.1):

    p = softmax(x W_r),   experts(x) = top_k(p),   gate_e(x) = p_e   for e in experts(x)

The gates are the softmax probabilities of the chosen experts, computed over
all experts before the top-k (Switch, GShard; Megatron-Core's
``moe_router_pre_softmax``); ties go to the lower expert.

**Capacity** (Fedus et al. 2021, sec. 2.2, eq. 3): with a capacity factor
``c > 0`` every expert takes at most ``ceil(c N k / E)`` of the ``N`` tokens'
``N k`` assignments; the rest are *dropped* (the token keeps only its other
experts, and the residual connection). Megatron-Core's ``probs`` policy keeps
each expert's highest-probability tokens (ties: the earlier token), and drops
on each rank before the tokens are dispatched, so which tokens drop depends
only on the micro-batch. ``c = 0`` is dropless.

**Load balancing** (Fedus et al. 2021, sec. 2.2, eq. 4-6): with ``f_e`` the
fraction of the ``N k`` assignments that chose expert ``e`` (before dropping)
and ``P_e`` the mean router probability of ``e`` over the tokens,

    L_aux = alpha E sum_e f_e P_e

is added to the loss (``alpha`` is ``aux_loss_coef``; Megatron-Core's
``switch_load_balancing_loss_func``). ``f_e`` is not differentiable; the
gradient flows through ``P_e``: ``dL_aux / dp_{t,e} = alpha E f_e / N``.

**Without numbers** (shape-only runs) there are no logits to route by. The
routing then follows a rule, :data:`ROUTINGS`: ``uniform`` gives every expert
``N k / E`` assignments; ``zipf:S`` gives the expert of popularity rank ``i``
a share proportional to ``1 / i^S`` (Zipf's law; ``S = 0`` is uniform), the
ranks a permutation of the experts drawn from the run's seed, the same for
every layer and every micro-batch. Either rule is deterministic, so every
expert-parallel rank knows how many tokens every other one sends it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ops
from ..ops import moe as ops_moe
from ..ops.arrays import Array, ShapeArray, dtype_of, is_shape_only
from ..ops.moe import Rows
from .context import add_aux_loss, current_loss_scale, report_routing
from .data import rng_for

ZIPF = "zipf:"


def routing_check(value: str) -> str | None:
    """None for ``uniform`` or ``zipf:S`` with a number ``0 <= S <= 100``; else what is wrong."""
    if value == "uniform":
        return None
    if value.startswith(ZIPF):
        try:
            s = float(value[len(ZIPF) :])
        except ValueError:
            s = math.nan
        if 0 <= s <= 100:
            return None
    return (
        "must be 'uniform' or 'zipf:S' with an exponent 0 <= S <= 100 (e.g. 'zipf:1.2'), "
        f"got {value!r}"
    )


#: The shape-only routing rules: ``uniform`` and ``zipf:S`` (module docstring).
ROUTINGS = ("uniform", "zipf:S")


@dataclass(frozen=True)
class RouterSpec:
    """How a layer routes: ``experts`` of which each token picks ``top_k``; the
    capacity factor (0: dropless), the load-balancing loss's coefficient, and the
    shape-only rule with the seed that draws its permutation."""

    experts: int
    top_k: int
    capacity_factor: float = 0.0
    aux_loss_coef: float = 0.0
    routing: str = "uniform"
    seed: int = 0

    def capacity(self, n: int) -> int | None:
        """Assignments one expert takes of ``n`` tokens' (None: dropless)."""
        if self.capacity_factor <= 0:
            return None
        return math.ceil(self.capacity_factor * n * self.top_k / self.experts)

    def rule_counts(self, n: int) -> list[int]:
        """Assignments per expert of ``n`` tokens under the shape-only rule, before
        dropping: ``n k`` in all, at most ``n`` each (a token picks an expert once)."""
        e, total = self.experts, n * self.top_k
        if self.routing == "uniform":
            share = np.full(e, 1.0 / e)
        else:
            exponent = float(self.routing[len(ZIPF) :])
            rank = rng_for(self.seed, 1_000_037).permutation(e)  # expert -> popularity rank
            weight = 1.0 / (rank + 1.0) ** exponent
            share = weight / weight.sum()
        return _apportion(total, share, n)


def _apportion(total: int, share: np.ndarray, cap: int) -> list[int]:
    """``total`` split in proportion to ``share`` by largest remainders (ties: the lower
    index), none above ``cap``: what a full one cannot take goes to the others."""
    counts = np.zeros(len(share), dtype=np.int64)
    open_ = np.ones(len(share), dtype=bool)
    left = total
    while left > 0:
        weights = np.where(open_, share, 0.0)
        ideal = left * weights / weights.sum()
        add = np.floor(ideal).astype(np.int64)
        order = np.lexsort((np.arange(len(share)), -(ideal - add)))
        for i in order[: left - int(add.sum())]:
            add[i] += 1
        counts += add
        over = np.maximum(counts - cap, 0)
        counts -= over
        left = int(over.sum())
        open_ &= counts < cap
    return [int(c) for c in counts]


@dataclass
class Routed:
    """Where a micro-batch's tokens go: the rows of the experts' input, expert-major.

    Attributes:
        n: the tokens routed.
        sizes: rows per expert, after dropping.
        rows: the token of every row (numerics), or the number of rows (shape-only).
        gates: the gate of every row, ``(rows,)``.
        experts: the expert of every row (numerics), else None.
        counts: assignments per expert before dropping (the ``f_e`` of the loss).
    """

    n: int
    sizes: list[int]
    rows: Rows
    gates: Array
    experts: np.ndarray | None
    counts: list[int]

    @property
    def dropped(self) -> int:
        return sum(self.counts) - sum(self.sizes)


def _top_k(
    probs: Array, spec: RouterSpec, name: str
) -> tuple[list[int], Rows, Any, Any, list[int]]:
    """The top-k choice and capacity: ``(sizes, rows, gates, experts, counts)``."""
    n, e, k = probs.shape[0], spec.experts, spec.top_k
    cap = spec.capacity(n)
    if is_shape_only(probs):
        counts = spec.rule_counts(n)
        sizes = counts if cap is None else [min(c, cap) for c in counts]
        gates: Array = ShapeArray((sum(sizes),), dtype_of(probs))
        ops.emit(f"{name}.topk", "elementwise", dtype_of(probs), 0, probs.nbytes + gates.nbytes)
        return sizes, sum(sizes), gates, None, counts
    chosen = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    mine = [np.flatnonzero((chosen == x).any(axis=1)) for x in range(e)]
    counts = [len(t) for t in mine]
    if cap is not None:
        for x, tokens in enumerate(mine):
            if len(tokens) > cap:
                best = np.lexsort((tokens, -probs[tokens, x]))[:cap]
                mine[x] = np.sort(tokens[best])
    rows = np.concatenate(mine).astype(np.int64)
    experts = np.repeat(np.arange(e), [len(t) for t in mine])
    gates = probs[rows, experts]
    ops.emit(f"{name}.topk", "elementwise", dtype_of(probs), 0, probs.nbytes + 2 * gates.nbytes)
    return [len(t) for t in mine], rows, gates, experts, counts


def route(spec: RouterSpec, weight: Array, x: Array, name: str) -> tuple[Routed, Any]:
    """Route the tokens ``x`` ``(N, h)`` with the router ``weight`` ``(h, E)``; the
    load-balancing loss is reported (:func:`~simulator.nn.context.add_aux_loss`).
    Returns the routing and what :func:`route_backward` needs."""
    logits = ops.matmul(x, weight, name=f"{name}.router")
    probs = ops_moe.softmax(logits, name=f"{name}.router.softmax")
    sizes, rows, gates, experts, counts = _top_k(probs, spec, name)
    routed = Routed(probs.shape[0], sizes, rows, gates, experts, counts)
    report_routing(name, sizes)
    if spec.aux_loss_coef > 0 and not is_shape_only(probs):
        add_aux_loss(_aux_loss(spec, probs, counts))
    return routed, (x, probs, routed)


def _aux_factor(spec: RouterSpec, n: int) -> float:
    """``alpha E / (N^2 k)``: L_aux is this times ``sum_e count_e sum_t p_{t,e}``."""
    return spec.aux_loss_coef * spec.experts / (n * n * spec.top_k)


def _aux_loss(spec: RouterSpec, probs: np.ndarray, counts: list[int]) -> float:
    """``alpha E sum_e f_e P_e`` (module docstring)."""
    return _aux_factor(spec, probs.shape[0]) * float(np.dot(counts, probs.sum(axis=0)))


def route_backward(
    spec: RouterSpec, weight: Array, dgates: Array, ctx: Any, name: str, input_grad: bool = True
) -> tuple[Array | None, Any]:
    """B of the router: the gates' gradient (and the load-balancing loss's, scaled as
    the loss is) back to the logits and, with ``input_grad``, to the tokens. Returns
    ``dx`` (or None) and what :func:`route_weight` needs."""
    x, probs, routed = ctx
    aux = spec.aux_loss_coef > 0

    if is_shape_only(probs):
        dprobs: Array = ShapeArray(probs.shape, dtype_of(probs))
    else:
        dprobs = np.zeros_like(probs)
        dprobs[routed.rows, routed.experts] = dgates
        if aux:
            scale = current_loss_scale() * _aux_factor(spec, probs.shape[0])
            dprobs += scale * np.asarray(routed.counts, dtype=probs.dtype)
    ops.emit(f"{name}.router.dgates", "elementwise", dtype_of(probs), 0, 2 * dprobs.nbytes)
    dlogits = ops_moe.softmax_backward(dprobs, probs, name=f"{name}.router.softmax_backward")
    dx = ops.matmul(dlogits, weight.T, name=f"{name}.router.dx") if input_grad else None
    return dx, (x, dlogits)


def route_weight(wctx: Any, name: str) -> Array:
    """W of the router: ``x^T dlogits``."""
    x, dlogits = wctx
    return ops.matmul(x.T, dlogits, name=f"{name}.router.dW")
