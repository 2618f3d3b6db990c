"""Measured bubbles and stashes equal the closed forms in the ideal case."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy

from .conftest import ideal_cluster, run

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
    from simulator.nn.gpt import GPTConfig

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
