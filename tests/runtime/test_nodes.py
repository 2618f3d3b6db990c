"""Runs on clusters whose nodes differ: each device at its own speed, memory and links.

The oracle is the roofline in the ideal case (toy devices whose only cost is
GEMM FLOPs, on free links): a ``fast`` node's devices have twice the peak, so
every action there takes exactly half the time.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from simulator import comm
from simulator.engine import Engine
from simulator.experiment.runner import run_strategy
from simulator.hardware import GB, ClusterSpec, LinkSpec, NodeSpec, cluster_of, preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.ops.arrays import ShapeArray
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from tests.conftest import assert_matches_single, ideal_cluster

PEAK = 1e12  # the toy device's, every dtype


def kinds(*speeds: float, devices_per_node: int = 1, memory: float | None = None) -> ClusterSpec:
    """One ideal node per speed, in order; node ``i``'s devices have ``speeds[i]`` times
    the toy peak (and ``memory`` bytes, on the last node, when given)."""
    base = ideal_cluster(devices_per_node=devices_per_node)
    runs = []
    for i, speed in enumerate(speeds):
        device = replace(
            base.device,
            name=f"x{speed:g}",
            peak_flops={k: v * speed for k, v in base.device.peak_flops.items()},
        )
        if memory is not None and i == len(speeds) - 1:
            device = replace(device, memory_bytes=memory)
        runs.append((NodeSpec(device, base.intra_node, base.inter_node), 1))
    return ClusterSpec.of_nodes("kinds", runs, devices_per_node)


def training(**kw) -> TrainingConfig:
    return TrainingConfig(**{"global_batch": 8, "steps": 1, **kw})


def test_a_pipeline_stage_on_a_faster_device_takes_the_roofline_time():
    """Stage 0 on the toy device, stage 1 on one twice as fast: F = 2bw^2 / peak per
    layer, BW = 4bw^2 / peak. GPipe, the slow stage first: it sets the pace, and the
    fast one adds its single F and BW, so the step is ``m (F0 + B0) + F1 + B1``."""
    m, b, w = 4, 2, 16
    result = run_strategy(
        kinds(1, 2), MLPConfig(2, w), training(global_batch=m * b),
        Strategy("pipe", pp=2, microbatches=m, schedule="gpipe"),
    )  # fmt: skip
    seconds = result.run.steps[-1].action_seconds
    f0, b0 = 2 * b * w * w / PEAK, 4 * b * w * w / PEAK
    f1, b1 = f0 / 2, b0 / 2
    assert seconds == {(0, "F"): f0, (1, "F"): f1, (1, "BW"): b1, (0, "BW"): b0}
    assert result.metrics["iteration_time_s"] == pytest.approx(m * (f0 + b0) + f1 + b1, rel=1e-12)


def test_fast_stage_first_waits_for_the_slow_one():
    """The mirror image: the slow stage works back to back from the first F on."""
    m, b, w = 3, 2, 16
    result = run_strategy(
        kinds(2, 1), MLPConfig(2, w), training(global_batch=m * b),
        Strategy("pipe", pp=2, microbatches=m, schedule="gpipe"),
    )  # fmt: skip
    f1, b1 = 2 * b * w * w / PEAK, 4 * b * w * w / PEAK
    f0, b0 = f1 / 2, b1 / 2
    assert result.metrics["iteration_time_s"] == pytest.approx(f0 + m * (f1 + b1) + b0, rel=1e-12)


def test_data_parallel_replicas_on_different_devices_wait_for_the_slower():
    """Step = the slower replica's compute + the sync (free links: none); the faster
    replica's difference is bubble, and nothing is folded."""
    m, b, w, layers = 2, 2, 16, 3
    result = run_strategy(
        kinds(1, 2), MLPConfig(layers, w), training(global_batch=2 * m * b),
        Strategy("dp", dp=2, microbatches=m),
    )  # fmt: skip
    slow = m * layers * 6 * b * w * w / PEAK
    metrics = result.metrics
    assert metrics["iteration_time_s"] == pytest.approx(slow, rel=1e-12)
    d0, d1 = metrics["devices"]
    assert d0["compute_s"] == pytest.approx(slow, rel=1e-12) and d0["bubble_s"] == 0
    assert d1["compute_s"] == pytest.approx(slow / 2, rel=1e-12)
    assert d1["bubble_s"] == pytest.approx(slow / 2, rel=1e-12)
    assert metrics["folded_replicas"] == 1
    # MFU against both devices' own peaks
    assert metrics["mfu"] == pytest.approx(
        metrics["model_flops_per_iteration"] / (3 * PEAK * slow), rel=1e-12
    )


def test_a_tensor_parallel_group_over_two_kinds_runs_at_the_slower_pace():
    strategy = Strategy("tp", tp=2, microbatches=2)
    model = MLPConfig(2, 16)
    mixed = run_strategy(kinds(1, 2), model, training(), strategy)
    slow = run_strategy(kinds(1, 1), model, training(), strategy)
    fast = run_strategy(kinds(2, 2), model, training(), strategy)
    seconds = mixed.run.steps[-1].action_seconds
    assert seconds == slow.run.steps[-1].action_seconds
    assert seconds != fast.run.steps[-1].action_seconds
    assert mixed.metrics["iteration_time_s"] == slow.metrics["iteration_time_s"]


def test_every_device_runs_out_of_its_own_memory():
    model, strategy = MLPConfig(2, 64), Strategy("dp", dp=2)
    small = 4096.0  # bytes: the second node's devices hold less than the model
    result = run_strategy(kinds(1, 1, memory=small), model, training(), strategy)
    assert result.status == "oom"
    assert "device 1 is out of memory" in result.metrics["message"]
    assert "has 4.00 KiB" in result.metrics["message"]
    # a lockstep group over both: each device keeps its own ledger and capacity
    tp = run_strategy(kinds(1, 1, memory=small), model, training(), Strategy("tp", tp=2))
    assert tp.status == "oom" and "device 1 is out of memory" in tp.metrics["message"]
    assert run_strategy(kinds(1, 1), model, training(), strategy).status == "ok"


def test_numerics_on_mixed_nodes_equal_the_single_device():
    cluster = kinds(1, 3, devices_per_node=4)
    model = MLPConfig(4, 8)
    single = run_strategy(cluster, model, training(steps=2), Strategy("single"))
    for strategy in (
        Strategy("dtp", dp=2, tp=2, pp=2, microbatches=2),
        Strategy("dp", dp=8),
        Strategy("zero", dp=4, pp=2, zero=1, microbatches=2),
    ):
        result = run_strategy(cluster, model, training(steps=2), strategy)
        assert_matches_single(result, single, rtol=1e-9)


def test_shape_only_work_is_priced_on_each_kind_of_device():
    """A replica on H100s must not reuse the times of one on A100s (shape-only runs
    price an action once per layout and kind of device)."""
    gpt = GPTConfig(layers=2, hidden=64, heads=8, seq_len=32, vocab=128, dtype="bf16")
    strategy = Strategy("dp", dp=2, tp=8, pp=1, microbatches=2)
    settings = training(numerics=False, global_batch=8, optimizer="adam")
    mixed = run_strategy(cluster_of([("dgx-a100", 1), ("dgx-h100", 1)]), gpt, settings, strategy)
    a100 = run_strategy(preset("dgx-a100", 2), gpt, settings, strategy)
    h100 = run_strategy(preset("dgx-h100", 2), gpt, settings, strategy)

    def compute(result, device: int) -> float:
        return result.metrics["devices"][device]["compute_s"]

    assert compute(mixed, 0) == compute(a100, 0)
    assert compute(mixed, 8) == compute(h100, 8)
    assert compute(mixed, 8) < compute(mixed, 0)


def test_a_message_between_nodes_moves_at_the_slower_nic_speed():
    fast = LinkSpec(100 * GB, 1e-6)
    slow = LinkSpec(10 * GB, 5e-6)
    base = ideal_cluster()
    nodes = [
        (NodeSpec(base.device, fast, fast), 1),
        (NodeSpec(base.device, fast, slow), 1),
    ]
    cluster = ClusterSpec.of_nodes("two", nodes, devices_per_node=4)
    engine = Engine(cluster)
    nbytes = 10**6
    assert engine.send(0, 1, nbytes, "pp", "inside") == pytest.approx(
        1e-6 + nbytes / fast.bandwidth
    )
    for src, dst in ((0, 4), (4, 0)):
        engine = Engine(cluster)
        end = engine.send(src, dst, nbytes, "pp", "across")
        assert end == pytest.approx(5e-6 + nbytes / slow.bandwidth)
    # a collective's messages get the same links: a ring over two ranks is two rounds
    # of half the bytes each way
    layout = comm.GroupLayout.of(cluster, (0, 4))
    assert (layout.intra, layout.inter) == (fast, slow)  # what the tuner estimates with
    xs = [ShapeArray((nbytes // 4,), "float32")] * 2
    _, plan = comm.collective("all_reduce", xs, "ring", layout=layout)
    end = Engine(cluster).collective(plan, (0, 4), "dp", "sum")
    assert end == pytest.approx(2 * (5e-6 + nbytes / 2 / slow.bandwidth), rel=1e-12)


def test_balanced_stages_give_the_faster_node_more_layers():
    """Six equal layers over a slow and a twice-as-fast stage: balanced puts two on the
    slow one and four on the fast, where uniform's three and three leave the slow
    stage setting the pace."""
    cluster, model = kinds(1, 2), MLPConfig(6, 16)
    runs = {
        partition: run_strategy(
            cluster, model, training(),
            Strategy(partition, pp=2, microbatches=4, partition=partition),
        )
        for partition in ("balanced", "uniform")
    }  # fmt: skip
    assert [len(r) for r in runs["balanced"].plan.stages] == [2, 4]
    assert [len(r) for r in runs["uniform"].plan.stages] == [3, 3]
    step = {k: r.metrics["iteration_time_s"] for k, r in runs.items()}
    assert step["balanced"] < step["uniform"]
    # on alike nodes the same model splits evenly
    alike = run_strategy(kinds(1, 1), model, training(), Strategy("b", pp=2, microbatches=4))
    assert [len(r) for r in alike.plan.stages] == [3, 3]


def test_pictures_draw_the_smallest_capacity_of_what_they_show():
    import matplotlib

    from simulator.experiment.runner import ScenarioResult
    from simulator.viz import plots

    # node 1's devices hold 16 KiB, near the 11 KiB a replica needs: the line is drawn
    cluster = kinds(1, 1, memory=16384.0)
    result = run_strategy(cluster, MLPConfig(2, 16), training(), Strategy("dp", dp=2))
    assert result.status == "ok"

    def texts(fig) -> str:
        return " ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))

    assert "device capacity 16.00 KiB" in texts(plots.memory(result))
    assert "device capacity 16.00 KiB" in texts(plots.compare(ScenarioResult("x", [result])))
