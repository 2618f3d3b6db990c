"""The mixture-of-experts layer: its gradients, its router, its place in the model, its counts."""

from dataclasses import replace

import numpy as np
import pytest

from simulator.nn import accounting
from simulator.nn.context import Reports, collecting_reports, loss_scale
from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.nn.moe import MoE, is_moe_layer, moe_layers, moe_spec
from simulator.nn.named import named_model
from simulator.nn.routing import RouterSpec, route
from simulator.ops.arrays import ShapeArray
from tests.gradcheck import assert_close_at, check_layer

SWIGLU = LlamaConfig(hidden=8, heads=2, kv_heads=1, ffn_hidden=6, experts=4, top_k=2)
GELU = GPTConfig(hidden=8, heads=2, experts=4, top_k=2)


def _layer(config, ffn: int, gated: bool, **changes) -> MoE:
    spec = moe_spec(replace(config, **changes), ffn, gated, seed=0)
    return MoE.create("moe", spec, np.random.default_rng(0), "float64", 0.5, 0.5)


@pytest.mark.parametrize(
    ("config", "ffn", "gated", "changes"),
    [
        (SWIGLU, 6, True, {}),
        (SWIGLU, 6, True, {"shared_experts": 1}),
        (GELU, 32, False, {"top_k": 1}),
        (GELU, 32, False, {"capacity_factor": 1.0}),
        (GELU, 32, False, {"moe_ffn_hidden": 4, "top_k": 3}),
    ],
)
def test_forward_and_backward_agree_with_finite_differences(config, ffn, gated, changes):
    # routing is piecewise constant: the check perturbs inputs and weights too little
    # to change which experts the tokens choose (aux_loss_coef = 0: the output only)
    moe = _layer(config, ffn, gated, aux_loss_coef=0.0, **changes)
    check_layer(moe, np.random.default_rng(1).normal(size=(2, 5, 8)))


def test_the_load_balancing_loss_has_the_gradient_it_adds():
    """Fedus et al. 2021, eq. 4: alpha E sum_e f_e P_e, whose gradient reaches the router
    (scaled as the loss is) when nothing else flows back."""
    moe = _layer(GELU, 32, False, aux_loss_coef=0.5)
    x = np.random.default_rng(1).normal(size=(2, 5, 8))

    def aux() -> float:
        sink = Reports()
        with collecting_reports(sink):
            moe.forward(x)
        return sink.aux[0]

    sink = Reports()
    with collecting_reports(sink):
        y, ctx = moe.forward(x)
    probs = ctx[0][1]
    counts = sink.tokens["moe"]
    n, e, k = 10, 4, 2
    assert sink.aux[0] == pytest.approx(
        0.5 * e * sum(counts[i] / (n * k) * probs[:, i].mean() for i in range(e))
    )
    moe.router.zero_grad()
    with loss_scale(1.0):
        moe.backward(np.zeros_like(y), ctx)
    assert_close_at(aux, moe.router.value, moe.router.grad, np.random.default_rng(2))


def test_top_k_picks_the_largest_probabilities_and_gates_are_them():
    spec = RouterSpec(experts=4, top_k=2)
    x = np.random.default_rng(0).normal(size=(6, 3))
    w = np.random.default_rng(1).normal(size=(3, 4))
    routed, (_, probs, _) = route(spec, w, x, "r")
    best = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    for t in range(6):
        mine = sorted(routed.experts[routed.rows == t])
        assert mine == sorted(best[t])
    np.testing.assert_array_equal(routed.gates, probs[routed.rows, routed.experts])
    assert routed.sizes == routed.counts and sum(routed.sizes) == 12


def test_capacity_keeps_each_experts_most_probable_tokens():
    # Fedus et al. 2021, eq. 3: capacity = ceil(c N k / E); Megatron-Core drops by probability
    spec = RouterSpec(experts=2, top_k=1, capacity_factor=1.0)
    x = np.array([[3.0], [2.0], [1.0], [-1.0]])
    w = np.array([[1.0, -1.0]])  # tokens 0, 1, 2 prefer expert 0
    routed, _ = route(spec, w, x, "r")
    assert spec.capacity(4) == 2 and routed.counts == [3, 1] and routed.sizes == [2, 1]
    assert list(routed.rows[:2]) == [0, 1] and routed.dropped == 1  # token 2 dropped


def test_shape_only_rules_give_uniform_and_zipf_counts():
    uniform = RouterSpec(experts=4, top_k=2).rule_counts(10)
    assert uniform == [5, 5, 5, 5]
    zipf = RouterSpec(experts=4, top_k=1, routing="zipf:1.0", seed=3).rule_counts(100)
    assert sum(zipf) == 100 and sorted(zipf, reverse=True) == [48, 24, 16, 12]
    # a token picks an expert once: nobody gets more than the tokens
    steep = RouterSpec(experts=4, top_k=2, routing="zipf:5").rule_counts(10)
    assert sum(steep) == 20 and max(steep) == 10
    routed, _ = route(uniform_spec := RouterSpec(4, 2, 1.0), ShapeArray((3, 4), "bf16"),
                      ShapeArray((10, 3), "bf16"), "r")  # fmt: skip
    assert routed.sizes == [5, 5, 5, 5] and uniform_spec.capacity(10) == 5


def test_moe_layers_sit_where_moe_every_and_first_dense_layers_put_them():
    config = replace(SWIGLU, layers=7, first_dense_layers=1, moe_every=2)
    assert [is_moe_layer(config, i) for i in range(7)] == [
        False, True, False, True, False, True, False
    ]  # fmt: skip
    assert moe_layers(config) == 3
    model = config.build(0, numerics=False)
    assert [b.moe is not None for b in model.blocks[1:-1]] == [
        is_moe_layer(config, i) for i in range(7)
    ]
    assert model.num_parameters == accounting.parameters(config)
    assert model.num_active_parameters == accounting.active_parameters(config)


def test_gpt_moe_counts_match_the_formulas():
    config = replace(GELU, layers=3, moe_every=2, shared_experts=1)
    model = config.build(0, numerics=False)
    assert model.num_parameters == accounting.parameters(config)
    assert model.num_active_parameters == accounting.active_parameters(config)


def test_mixtral_8x7b_has_the_published_parameters():
    """Jiang et al. 2024, Table 1 and the released configuration: derived from the
    shapes, 46,702,792,704 parameters, 12,879,925,248 active per token."""
    c = named_model("mixtral-8x7b").config
    h, a, kv, f, v, e, k, layers = 4096, 32, 8, 14336, 32000, 8, 2, 32
    assert (c.layers, c.hidden, c.heads, c.kv_heads, c.ffn_hidden, c.vocab, c.experts, c.top_k) == (
        layers, h, a, kv, f, v, e, k
    )  # fmt: skip
    attention = 2 * h * h + 2 * h * kv * (h // a)

    def total(experts: int) -> int:
        return layers * (attention + experts * 3 * h * f + h * e + 2 * h) + 2 * v * h + h

    assert total(e) == 46_702_792_704 == accounting.parameters(c)
    assert total(k) == 12_879_925_248 == accounting.active_parameters(c)
    model = c.build(0, numerics=False)
    assert (model.num_parameters, model.num_active_parameters) == (total(e), total(k))


def test_bad_moe_keys_are_one_clear_error():
    with pytest.raises(ValueError, match="top_k = 5 is more than the 4 experts"):
        replace(SWIGLU, top_k=5)
    with pytest.raises(ValueError, match="routing must be 'uniform' or 'zipf:S'"):
        replace(SWIGLU, routing="skewed")
    with pytest.raises(ValueError, match="shared_experts needs routed experts"):
        replace(SWIGLU, experts=0, shared_experts=1)
