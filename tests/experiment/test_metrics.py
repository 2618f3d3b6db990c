"""Measured bubbles and stashes equal the closed forms in the ideal case."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.hardware.faults import Straggler
from simulator.nn.abstract import AbstractConfig
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.parallel.pipeline import get_schedule
from simulator.parallel.training import TrainingConfig
from tests.conftest import ideal_cluster, run

GRID = [(2, 1), (2, 2), (2, 5), (3, 3), (4, 4), (4, 8), (4, 11)]


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("p", "m"), GRID)
def test_bubble_is_exactly_the_closed_form(schedule, p, m):
    result = run(
        MLPConfig(layers=2 * p, width=16),
        Strategy(schedule, pp=p, microbatches=m, schedule=schedule),
        cluster=ideal_cluster(),
        global_batch=2 * m,
        steps=1,
    )
    expected = (p - 1) / (m + p - 1)
    assert result.metrics["bubble_fraction"] == pytest.approx(expected, rel=1e-12, abs=1e-14)
    assert result.metrics["bubble_fraction_analytic"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 3)])
def test_peak_stash_gpipe_m_everywhere_1f1b_p_minus_i(p, m):
    cluster = ideal_cluster()
    model = MLPConfig(layers=p, width=8)
    for schedule, expected in (("gpipe", [m] * p), ("1f1b", [min(p - i, m) for i in range(p)])):
        result = run(
            model,
            Strategy(schedule, pp=p, microbatches=m, schedule=schedule),
            cluster=cluster,
            global_batch=m,
            steps=1,
        )
        peaks = [d["peak_inflight_microbatches"] for d in result.metrics["devices"]]
        assert peaks == expected, schedule


def test_single_device_has_no_bubble_and_uses_one_device():
    result = run(MLPConfig(4, 16), Strategy("single", microbatches=4), global_batch=8)
    m = result.metrics
    assert m["bubble_fraction"] == 0.0 and m["devices_used"] == 1
    assert m["comm_bytes"] == {"dp": 0, "tp": 0, "pp": 0}


def test_pipeline_traffic_is_one_activation_and_one_gradient_per_boundary():
    p, m, width, batch = 4, 4, 16, 8
    result = run(MLPConfig(4, width), Strategy("x", pp=p, microbatches=m), global_batch=batch)
    per_mb = (batch // m) * width * 8
    assert result.metrics["comm_bytes"]["pp"] == 2 * (p - 1) * m * per_mb


@settings(max_examples=15, deadline=None)
@given(p=st.integers(1, 4), m=st.integers(1, 6), schedule=st.sampled_from(["gpipe", "1f1b"]))
def test_time_is_conserved_on_every_device(p, m, schedule):
    result = run(
        MLPConfig(layers=4, width=8),
        Strategy("x", pp=p, microbatches=m, schedule=schedule),
        global_batch=m,
        steps=1,
    )
    t = result.metrics["iteration_time_s"]
    for d in result.metrics["devices"]:
        assert d["compute_s"] + d["exposed_comm_s"] + d["bubble_s"] == pytest.approx(t, rel=1e-9)
        fractions = ("compute_fraction", "exposed_comm_fraction", "bubble_fraction")
        assert sum(d[k] for k in fractions) == pytest.approx(1.0, rel=1e-9)
        assert all(d[k] >= 0 for k in fractions)


@pytest.mark.parametrize("pp", [1, 2])
def test_mfu_counts_model_flops_and_hfu_adds_recomputation(pp):

    config = GPTConfig(layers=4, hidden=32, heads=4, seq_len=16, vocab=64, dtype="bf16")
    B, L, s, h, V = 8, 4, 16, 32, config.padded_vocab()  # the logits cover the padded table
    eq7 = 72 * B * L * s * h**2 * (1 + s / (6 * h) + V / (12 * h * L))  # Korthikanti eq. 7
    eq3 = 96 * B * s * L * h**2 * (1 + s / (6 * h) + V / (16 * L * h))  # Megatron-LM eq. 3
    result = run(
        config,
        Strategy("r", pp=pp, microbatches=2, recompute="full"),
        numerics=False,
        global_batch=B,
        steps=1,
    )
    m = result.metrics
    assert m["model_flops_per_iteration"] == pytest.approx(eq7, rel=1e-9)
    assert m["hardware_flops_per_iteration"] == pytest.approx(eq3, rel=1e-9)
    peak = result.plan.cluster.device.peak("bf16") * pp * m["iteration_time_s"]
    assert m["mfu"] == pytest.approx(eq7 / peak, rel=1e-9)
    assert m["hfu"] == pytest.approx(eq3 / peak, rel=1e-9)
    assert m["tokens_per_s"] == pytest.approx(B * s / m["iteration_time_s"], rel=1e-12)


# -- the three parts of the step (docs/design.md, "Definitions") -----------
SCHEDULES = [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zb-h1", 1), ("zb-h2", 1), ("zbv", 2)]


@pytest.mark.parametrize(("schedule", "v"), SCHEDULES)
@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 12)])
@pytest.mark.parametrize("times", [(1.0, 1.0, 1.0), (1.0, 1.5, 0.5)])
def test_with_free_communication_the_bubble_is_the_closed_form(schedule, v, p, m, times):
    """Equal stages, no communication time: the measured step-based bubble equals the
    schedule's closed form wherever one exists (an abstract model has no optimizer
    step to dilute it)."""

    t_f, t_b, t_w = times
    model = AbstractConfig(
        stages=p * v, forward_ms=t_f / v, backward_ms=t_b / v, weight_ms=t_w / v, comm_ms=0.0
    )
    result = run(
        model,
        Strategy(schedule, pp=p, microbatches=m, schedule=schedule, chunks=v),
        numerics=False,
        global_batch=m,
        steps=1,
    )
    info = get_schedule(schedule)
    if info.split_backward:
        expected = info.bubble(p, m, v, t_f / v, t_b / v, t_w / v)
    else:  # a fused backward is B and W together
        expected = info.bubble(p, m, v, t_f / v, (t_b + t_w) / v, 0.0)
    if expected is None:
        pytest.skip(f"{schedule} has no closed form for these times")
    metrics = result.metrics
    assert metrics["bubble_fraction"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert metrics["bubble_fraction_analytic"] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert metrics["exposed_comm_fraction"] == 0.0


@pytest.mark.parametrize(
    ("model", "strategy"),
    [
        (MLPConfig(4, 64), Strategy("ddp", dp=4)),
        (MLPConfig(4, 64), Strategy("ddp-buckets", dp=4, bucket_mb=0.01)),
        (MLPConfig(4, 64), Strategy("zero1", dp=4, zero=1)),
        (MLPConfig(4, 64), Strategy("zero3", dp=4, zero=3)),
        (MLPConfig(4, 64), Strategy("accumulate", dp=4, microbatches=2)),
        ("gpt", Strategy("tp4", tp=4)),
        ("gpt", Strategy("tp4-sp", tp=4, sequence_parallel=True)),
        ("gpt", Strategy("dp2-tp4", dp=2, tp=4)),
        ("gpt", Strategy("tp-across-nodes", dp=2, tp=4, order="dp-tp-pp")),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_without_a_pipeline_a_balanced_run_has_no_bubble(model, strategy):
    """Tensor- and data-parallel waits are exposed communication, never bubble: on real
    (slow) links a balanced run without a pipeline has none."""

    if model == "gpt":
        model = GPTConfig(layers=2, hidden=32, heads=4, seq_len=8, vocab=64)
    result = run(model, strategy, global_batch=8)
    metrics = result.metrics
    assert metrics["exposed_comm_fraction"] > 0.01  # the links are not free ...
    for d in metrics["devices"]:  # ... yet nothing is bubble
        assert d["bubble_s"] == pytest.approx(0.0, abs=1e-12 * metrics["iteration_time_s"])


def test_without_a_pipeline_the_bubble_is_the_load_imbalance():
    """A straggler makes the others wait for it before the all-reduce can start: that
    wait is bubble, and exactly the difference in compute."""

    result = run_strategy(
        preset("toy"),
        MLPConfig(4, 64),
        TrainingConfig(global_batch=8, steps=1),
        Strategy("ddp", dp=4),
        faults=[Straggler(device=1, factor=2.0)],
    )
    devices = result.metrics["devices"]
    slowest = max(d["compute_s"] for d in devices)
    for d in devices:
        # the optimizer step runs at the straggler's pace too: compare the waits
        assert d["bubble_s"] == pytest.approx(slowest - d["compute_s"], rel=1e-9, abs=1e-15)
    assert devices[1]["bubble_s"] == 0.0 and devices[0]["bubble_s"] > 0


@pytest.mark.parametrize(
    "strategy",
    [
        Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2),
        Strategy("interleaved", dp=2, tp=2, pp=2, microbatches=2, schedule="interleaved", chunks=2),
        Strategy("zb", tp=2, pp=2, microbatches=4, schedule="zb-h1"),
        Strategy("zero1-sp", dp=2, tp=2, pp=2, microbatches=2, zero=1, sequence_parallel=True),
        Strategy("recompute", dp=2, pp=2, microbatches=4, recompute="selective", bucket_mb=0.01),
        Strategy("replicated", dp=4, data_parallel="replicated"),
    ],
    ids=lambda s: s.name,
)
def test_the_three_parts_sum_to_the_step_on_every_device(strategy):

    model = GPTConfig(layers=4, hidden=32, heads=4, seq_len=8, vocab=64)
    result = run(model, strategy, global_batch=8)
    m = result.metrics
    step = m["iteration_time_s"]
    keys = ("compute_fraction", "exposed_comm_fraction", "bubble_fraction")
    for d in m["devices"]:
        assert d["compute_s"] + d["exposed_comm_s"] + d["bubble_s"] == pytest.approx(step, rel=1e-9)
        assert sum(d[k] for k in keys) == pytest.approx(1.0, rel=1e-9)
        assert min(d[k] for k in keys) >= 0.0
    assert sum(m[k] for k in keys) == pytest.approx(1.0, rel=1e-9)
    for k in keys:  # the run's fraction is the mean of the devices'
        assert m[k] == pytest.approx(sum(d[k] for d in m["devices"]) / len(m["devices"]))
