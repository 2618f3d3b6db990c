"""Every data-parallel form reproduces single-device training; ZeRO's memory and traffic,
DDP's buckets, nn.DataParallel's primary, hierarchical all-reduce: the variants as
the runtime runs them (:mod:`simulator.runtime.data`)."""

import pytest

from simulator.hardware import preset
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.parallel.data import VARIANTS as LOWERED
from simulator.runtime.data import SYNCS
from tests.conftest import (
    assert_matches_single,
    assert_run_fails,
    ideal_cluster,
    run,
    single_device,
)

MODEL = MLPConfig(layers=6, width=16)

VARIANTS = [
    Strategy("ddp", dp=4),
    Strategy("ddp-accumulate", dp=2, microbatches=3),
    Strategy("buckets", dp=4, bucket_mb=0.001),
    Strategy("buckets-accumulate", dp=2, microbatches=2, bucket_mb=0.001),
    Strategy("tree", dp=3, allreduce_algorithm="tree"),
    Strategy("naive", dp=3, allreduce_algorithm="naive"),
    Strategy("recursive", dp=4, allreduce_algorithm="recursive"),
    Strategy("rabenseifner", dp=4, allreduce_algorithm="rabenseifner"),
    Strategy("hierarchical", dp=8, allreduce_algorithm="hierarchical"),
    Strategy("zero1", dp=4, zero=1),
    Strategy("zero1-buckets", dp=4, zero=1, bucket_mb=0.001, microbatches=2),
    Strategy("zero2", dp=4, zero=2, microbatches=3),
    Strategy("zero2-buckets", dp=2, zero=2, bucket_mb=0.002),
    Strategy("zero3", dp=4, zero=3, microbatches=2),
    Strategy("zero-recursive", dp=4, zero=2, allreduce_algorithm="recursive"),
    Strategy("replicated", dp=4, data_parallel="replicated"),
    Strategy("with-pipeline", dp=2, pp=2, microbatches=2, zero=1, bucket_mb=0.001),
    # each of DualPipe's chunks adds up half the micro-batches: its buckets launch then
    Strategy(
        "dualpipe-buckets",
        dp=2,
        pp=2,
        chunks=2,
        microbatches=4,
        schedule="dualpipe",
        bucket_mb=0.001,
    ),
]


@pytest.fixture(scope="module", params=["sgd", "adam"])
def single(request):
    return request.param, single_device(
        MODEL, global_batch=24, steps=3, optimizer=request.param, lr=0.01
    )


@pytest.mark.parametrize("strategy", VARIANTS, ids=lambda s: s.name)
def test_every_variant_reproduces_single_device_training(single, strategy):
    optimizer, reference = single
    result = run(MODEL, strategy, global_batch=24, steps=3, optimizer=optimizer, lr=0.01)
    assert_matches_single(result, reference)
    if strategy.data_parallel == "replicated":
        return  # the others receive the primary's weights at the start of the next step
    for replica in range(1, strategy.dp):  # every replica holds the same weights
        got = result.parameters(replica)
        for name, value in reference.parameters().items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_sum_instead_of_mean_takes_a_d_times_longer_step():
    mean = run(MODEL, Strategy("mean", dp=4), global_batch=8, steps=1, lr=0.01)
    total = run(
        MODEL, Strategy("sum", dp=4, grad_reduction="sum"), global_batch=8, steps=1, lr=0.01 / 4
    )
    single = single_device(MODEL, global_batch=8, steps=1, lr=0.01)
    # the seed's g = sum g_i is d times the global-batch gradient: lr/d undoes it
    assert_matches_single(total, single)
    assert_matches_single(mean, single)


def model_state(result, device=0):
    memory = result.metrics["devices"][device]["memory"]
    return memory["parameters"], memory["gradients"], memory["optimizer"]


@pytest.mark.parametrize("d", [2, 4, 8])
def test_zero_model_state_follows_the_zero_formulas(d):
    # mixed precision Adam: 2 + 2 + 12 bytes per parameter (ZeRO paper, sec. 3.1)
    model = MLPConfig(layers=4, width=64, dtype="bf16")
    psi = model.build(0, numerics=False).num_parameters
    expected = {0: 16 * psi, 1: 4 * psi + 12 * psi / d, 2: 2 * psi + 14 * psi / d, 3: 16 * psi / d}
    for stage, total in expected.items():
        result = run(
            model,
            Strategy(f"z{stage}", dp=d, zero=stage),
            numerics=False,
            optimizer="adam",
            global_batch=8,
            steps=1,
            cluster=preset("toy", nodes=2),
        )
        assert sum(model_state(result)) == pytest.approx(total, rel=1e-12), stage


@pytest.mark.parametrize("d", [2, 4])
def test_fp32_gradients_take_megatron_lms_bytes_per_parameter(d):
    """BF16 parameters with FP32 gradients (``grad_precision = "fp32"``): 18 bytes per
    parameter, ``6 + 12/d`` with the distributed optimizer (ZeRO-1), Megatron-LM's table
    of bytes per parameter (docs, "Distributed Optimizer")."""
    model = MLPConfig(layers=4, width=64, dtype="bf16")
    psi = model.build(0, numerics=False).num_parameters
    for stage, total in {0: 18 * psi, 1: 6 * psi + 12 * psi / d}.items():
        result = run(
            model,
            Strategy(f"z{stage}", dp=d, zero=stage),
            numerics=False,
            optimizer="adam",
            grad_precision="fp32",
            global_batch=8,
            steps=1,
            cluster=preset("toy", nodes=2),
        )
        assert sum(model_state(result)) == pytest.approx(total, rel=1e-12), stage


@pytest.mark.parametrize(("zero", "fp32"), [(0, (4, 4)), (1, (4, 2)), (2, (4, 2))])
def test_fp32_gradients_double_the_reduction_and_not_the_gather(zero, fp32):
    """Every device sends ``(d-1)/d`` of each pass's array: with BF16 gradients 2 bytes
    per parameter both ways; with FP32 gradients the all-reduce's or reduce-scatter's
    passes carry 4, ZeRO's all-gather of the updated BF16 parameters still 2."""
    d = 4
    model = MLPConfig(layers=4, width=64, dtype="bf16")
    psi = model.build(0, numerics=False).num_parameters
    for precision, (reduce, gather) in {"model": (2, 2), "fp32": fp32}.items():
        result = run(
            model,
            Strategy("z", dp=d, zero=zero),
            numerics=False,
            grad_precision=precision,
            global_batch=8,
            steps=1,
        )
        assert result.metrics["comm_bytes"]["dp"] == (d - 1) * psi * (reduce + gather)


def test_fp32_gradients_leave_full_precision_training_alone():
    """Only 16-bit parameters' gradients widen: numerics mode still equals one device."""
    strategy = Strategy("zero1", dp=4, zero=1)
    result = run(MODEL, strategy, global_batch=24, steps=3, grad_precision="fp32")
    assert_matches_single(result, single_device(MODEL, global_batch=24, steps=3))


def test_an_unknown_gradient_precision_is_one_line_naming_the_choices(tmp_path, capsys):
    scenario = """
name = "grads"
[cluster]
preset = "toy"
[model]
kind = "mlp"
layers = 2
width = 4
[training]
grad_precision = "fp64"
[[strategy]]
name = "ddp"
dp = 2
"""
    assert_run_fails(tmp_path, capsys, scenario, "grad_precision must be one of 'model', 'fp32'")


@pytest.mark.parametrize(("zero", "volumes"), [(0, 2), (1, 2), (2, 2), (3, 3)])
def test_traffic_per_step_is_2_psi_or_3_psi_with_a_ring(zero, volumes):
    d = 4
    model = MLPConfig(layers=4, width=64)
    psi_bytes = model.build(0, numerics=False).num_parameters * 8
    result = run(model, Strategy("z", dp=d, zero=zero), global_batch=8, steps=1)
    # every device sends (d-1)/d of the array per reduce-scatter or all-gather pass
    assert result.metrics["comm_bytes"]["dp"] == volumes * (d - 1) * psi_bytes


def test_buckets_hide_communication_behind_backward():
    # four layers of 2 MiB gradients, each all-reduced while the earlier layers'
    # backward still runs
    model = MLPConfig(layers=4, width=512)
    cluster = preset("toy")
    plain = run(model, Strategy("plain", dp=4), cluster=cluster, global_batch=512, steps=1)
    buckets = run(
        model, Strategy("buckets", dp=4, bucket_mb=1), cluster=cluster, global_batch=512, steps=1
    )
    assert buckets.metrics["exposed_comm_s"] < 0.6 * plain.metrics["exposed_comm_s"]
    assert buckets.metrics["iteration_time_s"] < plain.metrics["iteration_time_s"]


def test_replicated_is_slower_than_ddp_and_only_the_primary_keeps_optimizer_state():
    model = MLPConfig(layers=4, width=64)
    ddp = run(model, Strategy("ddp", dp=4), global_batch=64, steps=1, optimizer="adam")
    rep = run(
        model,
        Strategy("rep", dp=4, data_parallel="replicated"),
        global_batch=64,
        steps=1,
        optimizer="adam",
    )
    assert rep.metrics["iteration_time_s"] > ddp.metrics["iteration_time_s"]
    optimizer = [d["memory"]["optimizer"] for d in rep.metrics["devices"]]
    assert optimizer[0] > 0 and optimizer[1:] == [0, 0, 0]


def test_hierarchical_gradients_beat_a_flat_ring_through_one_nic_per_node():
    # with one NIC per node every channel of a flat ring crosses through it twice per
    # step; the two-level algorithm sends only 1/8 of the gradient across
    model = MLPConfig(layers=4, width=256)
    cluster = preset("dgx-a100", nodes=2).with_nics(1)
    ring = run(
        model,
        Strategy("ring", dp=16, allreduce_algorithm="ring"),
        cluster=cluster,
        global_batch=64,
        steps=1,
    )
    two_level = run(
        model,
        Strategy("h", dp=16, allreduce_algorithm="hierarchical"),
        cluster=cluster,
        global_batch=64,
        steps=1,
    )
    assert two_level.metrics["iteration_time_s"] < ring.metrics["iteration_time_s"]


def test_ideal_ddp_has_no_exposed_communication():
    result = run(MODEL, Strategy("ddp", dp=4), cluster=ideal_cluster(), global_batch=8)
    assert result.metrics["exposed_comm_s"] == 0.0


def test_every_variant_runs_under_the_name_it_is_lowered_under():
    assert set(SYNCS) == set(LOWERED)


@pytest.mark.parametrize(
    ("nodes", "layout"),
    [(2, {"dp": 16}), (2, {"dp": 2, "tp": 8})],
    ids=["data-parallel only", "dp x tp in a node"],
)
def test_buckets_never_slow_a_step_whose_links_are_otherwise_idle(nodes, layout):
    # the gradient traffic has its links to itself (the tensor-parallel collectives stay on
    # NVLink inside a node, the data-parallel ones cross the network): launching it during
    # backward can only hide it; the collectives that do share a port with it share the
    # bandwidth instead of waiting for whole buckets (buckets of PyTorch's 25 MB and more:
    # many tiny ones add a latency each, and can cost more than they hide)
    from dataclasses import replace

    from simulator import GPTConfig, TrainingConfig, preset, run_strategy

    gpt = GPTConfig(layers=8, hidden=1024, heads=16, seq_len=512, vocab=1024, dtype="bf16")
    training = TrainingConfig(numerics=False, global_batch=32, steps=1, optimizer="adam")
    cluster = preset("dgx-a100", nodes=nodes)
    base = Strategy("s", microbatches=2, **layout)
    whole = run_strategy(cluster, gpt, training, base).metrics["iteration_time_s"]
    for mb in (25, 100):
        bucketed = run_strategy(cluster, gpt, training, replace(base, bucket_mb=mb))
        assert bucketed.metrics["iteration_time_s"] <= whole * (1 + 1e-12)  # up to rounding
        assert bucketed.metrics["folded_replicas"] == layout["dp"]  # buckets keep folding
