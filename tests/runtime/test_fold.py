"""Folding identical data-parallel replicas: automatic, exact and visible."""

from dataclasses import replace

import pytest

from simulator.experiment.runner import run_strategy
from simulator.hardware import cluster_of, preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy, build_plan
from simulator.parallel.training import TrainingConfig
from simulator.runtime import decide_fold
from tests.conftest import assert_matches_single

GPT = GPTConfig(layers=4, hidden=32, heads=4, seq_len=16, vocab=64, dtype="bf16")


def _both(cluster, model, strategy, **training):
    """The same run with folding allowed and forbidden."""
    settings = {"global_batch": 16, "steps": 2, **training}
    folded = run_strategy(cluster, model, TrainingConfig(**settings), strategy)
    unfolded = run_strategy(
        cluster, model, TrainingConfig(**settings, fold_replicas=False), strategy
    )
    return folded, unfolded


def _same_metrics(folded, unfolded) -> None:
    a, b = dict(folded.metrics), dict(unfolded.metrics)
    assert a.pop("folded_replicas") > 1 and b.pop("folded_replicas") == 1
    assert a == b


CASES = [
    # numerics: every replica's math runs; messages timed one by one
    (preset("toy", nodes=2), MLPConfig(4, 16), Strategy("d", dp=4, pp=2, microbatches=2), {}),
    (
        preset("toy", nodes=2),
        MLPConfig(4, 16),
        Strategy(
            "z", dp=2, pp=2, microbatches=2, zero=1, schedule="gpipe", overlap_grad_reduce=False
        ),
        {"optimizer": "adam"},
    ),
    # shape-only, fused collectives
    (
        preset("dgx-a100", nodes=2),
        GPT,
        Strategy(
            "z1",
            dp=2,
            tp=2,
            pp=2,
            microbatches=4,
            zero=1,
            recompute="full",
            overlap_grad_reduce=False,
        ),
        {"numerics": False, "optimizer": "adam"},
    ),
    (
        preset("dgx-a100", nodes=4),
        GPT,
        Strategy(
            "i",
            dp=2,
            tp=2,
            pp=2,
            microbatches=4,
            chunks=2,
            schedule="interleaved",
            pp_scatter_gather=True,
        ),
        {"numerics": False},
    ),
    # two GPUs per NIC: each replica's tensor-parallel pair shares its own adapter
    (
        preset("dgx-a100", nodes=2).with_nics(4),
        GPT,
        Strategy("n", dp=4, tp=2, pp=2, microbatches=2),
        {"numerics": False},
    ),
    # data-parallel traffic during backward, beside the replicas' own: gradient buckets,
    # ZeRO-2's reduce-scatter of every micro-batch, ZeRO-3's gathers of every block
    (
        preset("toy", nodes=2),
        MLPConfig(4, 16),
        Strategy("b", dp=4, pp=2, microbatches=2, bucket_mb=0.0001),
        {},
    ),
    (
        preset("dgx-a100", nodes=2).with_nics(4),
        GPT,
        Strategy("nb", dp=4, tp=2, pp=2, microbatches=4, bucket_mb=0.01),
        {"numerics": False},
    ),
    (
        preset("dgx-a100", nodes=2),
        GPT,
        Strategy("z2", dp=4, tp=2, pp=2, microbatches=4, zero=2),
        {"numerics": False, "optimizer": "adam"},
    ),
    (preset("toy", nodes=2), MLPConfig(4, 16), Strategy("z3", dp=4, microbatches=2, zero=3), {}),
    # ZeRO-1 reduce-scattering during the last backward (overlap_grad_reduce, the default)
    (
        preset("toy", nodes=2),
        MLPConfig(4, 16),
        Strategy("zo", dp=2, pp=2, microbatches=2, zero=1, overlap_grad_reduce=True),
        {"optimizer": "adam"},
    ),
    (
        preset("dgx-a100", nodes=2),
        GPT,
        Strategy("z1o", dp=2, tp=2, pp=2, microbatches=4, zero=1, overlap_grad_reduce=True),
        {"numerics": False, "optimizer": "adam"},
    ),
    # the updated parameters gathered beside the next step's forward (overlap_param_gather)
    (
        preset("dgx-a100", nodes=2),
        GPT,
        Strategy("z1p", dp=2, tp=2, pp=2, microbatches=4, zero=1, overlap_param_gather=True),
        {"numerics": False, "optimizer": "adam"},
    ),
    (
        preset("toy", nodes=2),
        MLPConfig(4, 16),
        Strategy("z2p", dp=2, pp=2, microbatches=2, zero=2, overlap_param_gather=True),
        {"optimizer": "adam"},
    ),
]


@pytest.mark.parametrize(("cluster", "model", "strategy", "training"), CASES)
def test_folded_and_unfolded_runs_report_the_same_numbers(cluster, model, strategy, training):
    folded, unfolded = _both(cluster, model, strategy, **training)
    _same_metrics(folded, unfolded)
    if folded.losses[0] is not None:
        assert_matches_single(folded, unfolded, rtol=0)


def test_folded_results_and_pictures_list_every_device():
    folded, _ = _both(preset("toy", nodes=2), MLPConfig(4, 16), Strategy("d", dp=4, pp=2))
    assert folded.metrics["folded_replicas"] == 4
    assert [d["device"] for d in folded.metrics["devices"]] == list(range(8))
    assert {e.device for e in folded.trace.events} == set(range(8))


def test_replicas_straddling_nodes_differently_are_not_folded():
    # tp2 x dp3 x pp2 in tp-dp-pp order on nodes of 8: replica 0's pipeline stays in node
    # 0 while replica 1's crosses into node 1
    cluster = preset("dgx-a100", nodes=2)
    plan = build_plan(
        cluster,
        GPT,
        TrainingConfig(numerics=False, global_batch=6, steps=1),
        Strategy("x", dp=3, tp=2, pp=2, order="tp-dp-pp"),
    )
    fold = decide_fold(plan, allowed=True)
    assert not fold and "links differ" in fold.reason


def test_what_turns_folding_off():
    plan = build_plan(
        preset("toy", nodes=2),
        MLPConfig(2, 8),
        TrainingConfig(global_batch=8, steps=1),
        Strategy("r", dp=4, data_parallel="replicated"),
    )
    assert "nn.DataParallel" in decide_fold(plan, allowed=True).reason
    plan = build_plan(
        preset("toy", nodes=2),
        MLPConfig(2, 8),
        TrainingConfig(global_batch=8, steps=1),
        Strategy("b", dp=4, bucket_mb=0.001),
    )
    # buckets overlap the replicas' own traffic, and still fold
    assert decide_fold(plan, allowed=True).replicas == 4
    assert decide_fold(plan, allowed=False).reason == "folding turned off"


def test_replicas_sharing_an_adapter_are_not_folded():
    plan = build_plan(
        preset("dgx-a100", nodes=2).with_nics(4),
        GPT,
        TrainingConfig(numerics=False, global_batch=16, steps=1),
        Strategy("s", dp=8, pp=2, microbatches=2),
    )
    fold = decide_fold(plan, allowed=True)
    assert not fold and "share network adapters" in fold.reason


MIXED = cluster_of([("dgx-a100", 1), ("dgx-h100", 1)])
#: tp-dp-pp places both replicas' stage 0 on the A100 node and their stage 1 on the H100
#: node: the replicas differ from each other in nothing
ALIKE = Strategy("alike", dp=2, tp=4, pp=2, microbatches=4, order="tp-dp-pp")
TOY = preset("toy")
#: a toy node whose devices are three times as fast
FAST_TOY = replace(TOY, device=replace(TOY.device, name="fast", peak_flops={"float64": 3e12}))


@pytest.mark.parametrize(
    ("cluster", "model", "strategy", "training"),
    [
        (MIXED, GPT, ALIKE, {"numerics": False, "optimizer": "adam"}),
        (
            cluster_of([(TOY, 1), (FAST_TOY, 1)]),
            MLPConfig(4, 16),
            Strategy("m", dp=2, tp=2, pp=2, microbatches=2, order="tp-dp-pp"),
            {},
        ),
    ],
)
def test_alike_replicas_on_mixed_nodes_fold_exactly(cluster, model, strategy, training):
    assert not cluster.homogeneous
    folded, unfolded = _both(cluster, model, strategy, **training)
    _same_metrics(folded, unfolded)
    if folded.losses[0] is not None:
        assert_matches_single(folded, unfolded, rtol=0)


def test_replicas_on_different_devices_are_not_folded():
    # tp-pp-dp: replica 0 on the A100 node, replica 1 on the H100 node
    plan = build_plan(
        MIXED,
        GPT,
        TrainingConfig(numerics=False, global_batch=8, steps=1),
        Strategy("x", dp=2, tp=4, pp=2, order="tp-pp-dp"),
    )
    fold = decide_fold(plan, allowed=True)
    assert fold.replicas == 1 and fold.reason == "the replicas' devices differ"
    # the same layout on the alike replicas is folded
    plan = build_plan(MIXED, GPT, TrainingConfig(numerics=False, global_batch=8, steps=1), ALIKE)
    assert decide_fold(plan, allowed=True).replicas == 2
