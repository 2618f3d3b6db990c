"""Expert parallelism trains a mixture of experts exactly like one device, drops the same
tokens, moves the closed form's bytes, and shows the load of its busiest expert."""

import functools
from dataclasses import replace

import numpy as np
import pytest

from simulator import Strategy
from simulator.errors import ConfigError, LayoutError
from simulator.experiment.runner import run_strategy
from simulator.nn import routing
from simulator.nn.context import current_batch
from simulator.nn.llama import LlamaConfig
from simulator.parallel.mesh import Mesh
from simulator.parallel.training import TrainingConfig
from tests.conftest import assert_matches_single, ideal_cluster, run

# 4 experts, top-2, dropless; a shared expert in the first of the two MoE layers' models
MOE = LlamaConfig(
    layers=2, hidden=16, heads=4, kv_heads=2, ffn_hidden=12, seq_len=4, vocab=16,
    experts=4, top_k=2,
)  # fmt: skip
SHARED = replace(MOE, shared_experts=1)
TRAINING = {"global_batch": 8, "steps": 2, "optimizer": "adam", "lr": 0.05}


@functools.cache
def one_device(model, microbatches: int):
    """The oracle: one device running the same micro-batches (the load-balancing loss and
    the capacity count a micro-batch's tokens, as Megatron-Core counts them)."""
    return run(model, Strategy("single", microbatches=microbatches), **TRAINING)


LAYOUTS = [
    (MOE, Strategy("ep2", dp=2, ep=2, microbatches=2)),
    (MOE, Strategy("ep4", dp=4, ep=4)),
    (MOE, Strategy("ep2-dp4", dp=4, ep=2)),
    (MOE, Strategy("ep2-tp2", dp=2, ep=2, tp=2, microbatches=2)),
    (MOE, Strategy("ep4-tp2-sp", dp=4, ep=4, tp=2, sequence_parallel=True)),
    (MOE, Strategy("ep2-pp2", dp=2, ep=2, pp=2, microbatches=2)),
    (MOE, Strategy("ep2-tp2-pp2", dp=2, ep=2, tp=2, pp=2, microbatches=2)),
    (MOE, Strategy("ep2-dp4-order", dp=4, ep=2, order="tp-dp-ep-pp")),
    (MOE, Strategy("ep2-zero2", dp=4, ep=2, zero=2, bucket_mb=0.001)),
    (
        MOE,
        Strategy(
            "ep2-zb-recompute", dp=2, ep=2, pp=2, microbatches=2, schedule="zb-h1", recompute="full"
        ),
    ),
    (SHARED, Strategy("shared-ep2-overlap", dp=2, ep=2, tp=2, microbatches=2, ep_overlap="both")),
    (SHARED, Strategy("shared-ep4-zero1", dp=4, ep=4, zero=1)),
    (
        SHARED,
        Strategy(
            "shared-ep2-dualpipev",
            dp=2,
            ep=2,
            pp=2,
            chunks=2,
            microbatches=4,
            schedule="dualpipev",
            ep_overlap="both",
        ),
    ),
]


@pytest.mark.parametrize(("model", "strategy"), LAYOUTS, ids=[s.name for _, s in LAYOUTS])
def test_expert_parallel_layouts_train_like_one_device(model, strategy):
    result = run(model, strategy, **TRAINING)
    assert result.metrics["comm_bytes"]["ep"] > 0
    assert_matches_single(result, one_device(model, strategy.dp * strategy.microbatches))


def test_the_load_balancing_loss_is_part_of_the_objective():
    plain = one_device(replace(MOE, aux_loss_coef=0.0), 2)
    balanced = one_device(MOE, 2)
    assert plain.losses[0] < balanced.losses[0] < plain.losses[0] + 0.1


def _dropped(monkeypatch) -> set[tuple]:
    """Every (global token, layer, expert) the routers drop, as a run goes."""
    seen: set[tuple] = set()
    real = routing.route

    def spy(spec, weight, x, name):
        routed, ctx = real(spec, weight, x, name)
        probs = ctx[1]
        if not isinstance(probs, np.ndarray):
            return routed, ctx  # shape-only (the planner pricing blocks): nothing to drop
        chosen = np.argsort(-probs, axis=1, kind="stable")[:, : spec.top_k]
        kept = set(zip(routed.rows.tolist(), routed.experts.tolist(), strict=True))
        info = current_batch()
        base = info.step * 10_000 + info.first_sample * MOE.seq_len
        for t in range(probs.shape[0]):
            for e in chosen[t]:
                if (t, int(e)) not in kept:
                    seen.add((base + t, name, int(e)))
        return routed, ctx

    monkeypatch.setattr("simulator.parallel.expert.moe.route", spy)
    monkeypatch.setattr("simulator.nn.moe.route", spy)
    return seen


def test_with_a_capacity_the_same_tokens_are_dropped(monkeypatch):
    model = replace(MOE, capacity_factor=1.0, top_k=1)
    dropped = _dropped(monkeypatch)
    reference = run(model, Strategy("single", microbatches=4), **TRAINING)
    by_one = set(dropped)
    dropped.clear()
    result = run(model, Strategy("ep4", dp=4, ep=4, tp=2), **TRAINING)
    assert by_one and dropped == by_one
    assert_matches_single(result, reference)


@pytest.mark.parametrize(
    ("model", "strategy", "message"),
    [
        (MOE, Strategy("x", dp=2, ep=3), "ep = 3 does not divide the 4 experts"),
        (replace(MOE, experts=6), Strategy("x", dp=4, ep=3), "ep = 3 does not divide dp = 4"),
        (replace(MOE, experts=0), Strategy("x", dp=2, ep=2), "the model has none"),
        (replace(MOE, routing="zipf:1"), Strategy("x", dp=2, ep=2), "is a shape-only rule"),
        (MOE, Strategy("x", dp=2, ep=2, zero=3), "zero = 3 with ep > 1 is not modelled"),
    ],
)
def test_layouts_that_cannot_work_are_one_clear_error(model, strategy, message):
    with pytest.raises(LayoutError, match=message):
        run(model, strategy, **TRAINING)


def test_experts_with_context_parallelism_are_refused_up_front():
    with pytest.raises(
        ConfigError, match=r"ep > 1 with cp > 1 is not supported: set cp = 1 or ep = 1"
    ):
        Strategy("x", dp=2, cp=2, ep=2)
    with pytest.raises(LayoutError, match="cp = 2 with a mixture of experts"):
        run(MOE, Strategy("x", dp=2, cp=2), **TRAINING)


def test_expert_groups_are_carved_out_of_the_data_ranks():
    mesh = Mesh(dp=8, tp=2, ep=4)
    assert mesh.ep_group(5) == [4, 5, 6, 7] and mesh.edp_group(5) == [1, 5]
    other = Mesh(dp=8, tp=2, ep=4, order="tp-dp-ep-pp")
    assert other.ep_group(5) == [1, 3, 5, 7] and other.edp_group(5) == [4, 5]
    assert mesh.device(dp=5, tp=1) == other.device(dp=5, tp=1) == 11  # no device moves


# shape-only: a model whose MoE layers dominate, on toy devices with free links
BIG = LlamaConfig(
    layers=2, hidden=64, heads=4, kv_heads=4, ffn_hidden=512, seq_len=32, vocab=64,
    experts=4, top_k=1, dtype="bf16", first_dense_layers=1,
)  # fmt: skip


def _shape_only(model, strategy, cluster=None):
    training = TrainingConfig(numerics=False, global_batch=8, steps=1)
    return run_strategy(cluster or ideal_cluster(1, 4), model, training, strategy).metrics


@pytest.mark.parametrize("ep", [2, 4])
def test_dispatch_and_combine_move_the_closed_form_bytes(ep):
    """Per MoE layer and micro-batch every device sends 2 tokens k h bytes (ep-1)/ep
    under uniform routing (dispatch and combine forward; their gradients as much again)."""
    model = replace(BIG, top_k=2)
    m = _shape_only(model, Strategy("ep", dp=ep, ep=ep, microbatches=2))
    tokens = (8 // (ep * 2)) * model.seq_len  # per micro-batch
    per_layer = 2 * tokens * model.top_k * model.hidden * 2 * (ep - 1) / ep
    moe, micro = 1, 2
    assert m["comm_bytes"]["ep"] == ep * moe * micro * 2 * per_layer


def _hot_share(experts: int) -> float:
    """A Zipf exponent whose most popular expert gets twice the mean share, 2 / E."""
    lo, hi = 0.0, 20.0
    for _ in range(200):
        mid = (lo + hi) / 2
        share = 1 / sum(1 / (i + 1) ** mid for i in range(experts))
        lo, hi = (mid, hi) if share < 2 / experts else (lo, mid)
    return lo


def test_the_busiest_expert_rank_sets_the_pace():
    """With one expert getting twice the mean tokens, its rank's expert compute is twice
    the mean and every other rank waits for it: the step grows by its extra compute."""
    skew = f"zipf:{_hot_share(4)!r}"
    strategy = Strategy("ep4", dp=4, ep=4)
    uniform = _shape_only(BIG, strategy)
    skewed = _shape_only(replace(BIG, routing=skew), strategy)
    tokens = skewed["tokens_per_expert"]
    assert max(tokens) == 2 * sum(tokens) / 4 and skewed["expert_imbalance"] == 2.0
    assert uniform["expert_imbalance"] == 1.0
    hot = tokens.index(max(tokens))  # rank e holds expert e
    work = [d["compute_s"] for d in skewed["devices"]]
    base = uniform["devices"][0]["compute_s"]
    extra = [w - base for w in work]  # the experts' compute above the uniform run's
    experts = (extra[hot] + base - _no_experts(strategy)) / (base - _no_experts(strategy))
    assert experts == pytest.approx(2.0, rel=1e-9)
    assert skewed["iteration_time_s"] - uniform["iteration_time_s"] == pytest.approx(
        extra[hot], rel=1e-9
    )


def _no_experts(strategy):
    """The compute of a rank whose experts get no tokens at all: all but the experts'."""
    spec = routing.RouterSpec(4, 1, routing="zipf:100", seed=0)
    assert sorted(spec.rule_counts(64)) == [0, 0, 0, 64]
    m = _shape_only(replace(BIG, routing="zipf:100"), strategy)
    return min(d["compute_s"] for d in m["devices"])
