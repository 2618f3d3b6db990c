"""Faults as a lesson: a straggler sets the pace, a slow link slows its messages, a failed
device stops its groups -- reported, never hung."""

from dataclasses import replace

import pytest

from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.hardware.faults import Fail, SlowLink, Straggler
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from tests.conftest import ideal_cluster

MLP = MLPConfig(4, 32)


def _dp(cluster, faults=(), **training):
    settings = {"global_batch": 8, "steps": 1, **training}
    return run_strategy(
        cluster, MLP, TrainingConfig(**settings), Strategy("dp", dp=2), faults=faults
    )


def test_a_straggler_sets_the_pace_of_synchronous_data_parallelism():
    # free links: the step is the slowest replica's compute, the other waits (bubble)
    healthy = _dp(ideal_cluster())
    slow = _dp(ideal_cluster(), [Straggler(device=0, factor=1.5)])
    compute = healthy.metrics["devices"][0]["compute_s"]
    assert slow.metrics["iteration_time_s"] == pytest.approx(1.5 * compute, rel=1e-12)
    straggler, other = slow.metrics["devices"]
    assert straggler["compute_s"] == pytest.approx(1.5 * compute, rel=1e-12)
    assert other["bubble_s"] == pytest.approx(0.5 * compute, rel=1e-12)
    assert slow.metrics["folded_replicas"] == 1 and healthy.metrics["folded_replicas"] == 2
    assert slow.losses == healthy.losses


def test_with_real_links_the_step_is_the_slowest_compute_plus_the_sync():
    cluster = preset("toy")
    healthy = _dp(cluster)
    slow = _dp(cluster, [Straggler(device=1, factor=2.0)])
    compute = healthy.metrics["devices"][1]["compute_s"]
    lo, hi = slow.step_window
    sync = [e for e in slow.trace.select([0], lo, hi) if e.cat == "dp"]
    sync_s = max(e.end for e in sync) - min(e.start for e in sync)
    assert slow.metrics["iteration_time_s"] == pytest.approx(2.0 * compute + sync_s, rel=1e-9)


def test_jitter_is_drawn_from_the_seed():
    fault = [Straggler(device=0, factor=1.5, jitter=0.3)]
    a, b = _dp(ideal_cluster(), fault), _dp(ideal_cluster(), fault)
    c = _dp(ideal_cluster(), fault, seed=1)
    assert a.metrics["iteration_time_s"] == b.metrics["iteration_time_s"]
    assert a.metrics["iteration_time_s"] != c.metrics["iteration_time_s"]


def test_a_slow_link_carries_factor_times_its_bandwidth():
    training = TrainingConfig(global_batch=8, steps=1)
    cluster = preset("toy")
    link = cluster.intra_node
    nbytes = 8 * 32 * 8  # one activation: 8 samples of 32 float64

    def message_s(faults) -> float:
        result = run_strategy(cluster, MLP, training, Strategy("p", pp=2), faults=faults)
        sends = [e for e in result.trace.events if e.args.get("direction") == "send"]
        assert {e.args["bytes"] for e in sends} == {nbytes}
        return sends[0].duration

    assert message_s([]) == pytest.approx(link.latency + nbytes / link.effective_bandwidth)
    slowed = message_s([SlowLink(factor=0.25, device=1)])
    assert slowed == pytest.approx(link.latency + nbytes / (0.25 * link.effective_bandwidth))


@pytest.mark.parametrize("detail", ["fused", "steps"])
def test_slow_links_slow_the_collectives_that_cross_them(detail):
    # every port of a single-switch node slowed by 4: the gradient all-reduce takes what
    # it takes on links of a quarter of the bandwidth
    cluster = preset("toy")
    quarter = replace(
        cluster, intra_node=replace(cluster.intra_node, bandwidth=cluster.intra_node.bandwidth / 4)
    )
    training = {"global_batch": 8, "steps": 1, "collective_detail": detail}
    dp4 = Strategy("dp", dp=4, allreduce_algorithm="ring")

    def all_reduce_s(c, faults=()):
        result = run_strategy(c, MLP, TrainingConfig(**training), dp4, faults=faults)
        spans = [e for e in result.trace.events if e.cat == "dp" and e.device == 0]
        return max(e.end for e in spans) - min(e.start for e in spans)

    slowed = all_reduce_s(cluster, [SlowLink(factor=0.25, device=d) for d in range(4)])
    assert slowed == pytest.approx(all_reduce_s(quarter), rel=1e-12)
    assert slowed > all_reduce_s(cluster)


def test_a_failed_device_stops_the_run_and_names_who_waits_for_it():
    cluster = replace(preset("toy"), nodes=1)
    result = run_strategy(
        cluster,
        MLP,
        TrainingConfig(global_batch=8, steps=3),
        Strategy("pipe", pp=2, microbatches=4),
        faults=[Fail(device=1, at_ms=0.05)],
    )
    assert result.status == "failed"
    message = result.metrics["message"]
    assert "device 1 failed at 0.050 ms" in message
    assert "worker 0 (dp 0, pp rank 0) waits for the" in message and "from worker 1" in message
    assert "lost" in message
