"""Megatron-Core's tensor-parallel communication overlap (``tp_comm_overlap``): the
sequence-parallel all-gathers and reduce-scatters cut into chunks under the GEMMs'
chunks. Timing only: the numbers are those of the run without it."""

from dataclasses import replace

import numpy as np
import pytest

from simulator.comm import closed_forms
from simulator.errors import LayoutError
from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.llama import LlamaConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from tests.conftest import TINY_MLP, assert_matches_single, assert_run_fails, run, single_device

GPT = GPTConfig(layers=2, hidden=32, heads=4, seq_len=16, vocab=64, dtype="float64")
LLAMA = LlamaConfig(layers=2, hidden=32, heads=4, kv_heads=2, ffn_hidden=48, seq_len=16,
                    vocab=64, dtype="float64")  # fmt: skip
ON = Strategy("on", tp=4, sequence_parallel=True, tp_comm_overlap=True)


@pytest.mark.parametrize(
    ("model", "strategy"),
    [
        (GPT, ON),
        (LLAMA, ON),
        # zero bubble: the input gradients' reduce-scatters pipelined without the W GEMMs
        (GPT, replace(ON, tp=2, pp=2, microbatches=4, schedule="zb-h1")),
        # recomputation reruns the pipelined forward; blocking bulk collectives beside it
        (GPT, replace(ON, recompute="full", async_tp=False)),
    ],
    ids=["gpt", "llama", "zb-h1", "recompute"],
)
def test_the_numbers_are_the_single_devices_and_those_without_the_option(model, strategy):
    on = run(model, strategy)
    off = run(model, replace(strategy, tp_comm_overlap=False))
    assert_matches_single(on, single_device(model))
    assert on.losses == off.losses  # bit for bit
    for name, value in off.parameters().items():
        np.testing.assert_array_equal(on.parameters()[name], value, err_msg=name)
    assert on.metrics["overlap"]["tp_comm_overlap"] is True
    assert off.metrics["overlap"]["tp_comm_overlap"] is False


def test_on_an_h100_node_the_step_is_faster_and_less_communication_is_exposed():
    # tp 8 with sequence parallelism on one DGX H100, shape-only; nothing but the
    # tensor-parallel group talks (dp = pp = 1), so the exposed time is its collectives'
    model = GPTConfig(layers=2, hidden=4096, heads=32, seq_len=2048, vocab=32000, dtype="bf16")
    training = TrainingConfig(numerics=False, global_batch=1, steps=1)
    cluster = preset("dgx-h100", nodes=1)
    off = Strategy("off", tp=8, sequence_parallel=True)
    results = [run_strategy(cluster, model, training, s)
               for s in (off, replace(off, name="on", tp_comm_overlap=True))]  # fmt: skip
    before, after = (r.metrics for r in results)
    assert after["exposed_comm_s"] < 0.7 * before["exposed_comm_s"]
    assert after["iteration_time_s"] < before["iteration_time_s"]
    assert after["mfu"] > before["mfu"]
    # the chunks run on the tensor-parallel lanes while the device computes
    events = [e for e in results[1].trace.events if e.device == 0]
    computes = [e for e in events if e.lane == "compute"]
    rings = [e for e in events if "[ring " in e.name]
    assert len(rings) == 2 * 6 * 7  # 2 layers, 6 GEMMs, t - 1 transfers each
    under = sum(
        max(0.0, min(r.end, c.end) - max(r.start, c.start)) for r in rings for c in computes
    )
    assert under > 0.5 * sum(r.end - r.start for r in rings)


def test_in_the_ideal_case_no_chunk_is_exposed():
    # on toy devices with tp = 4 every chunk's transfer (alpha + n beta for the n bytes
    # of s/t tokens) is shorter than its GEMM chunk. The ring exchange's first GEMM
    # chunk is the rank's own shard and its reduce-scatter's last chunk the rank's own
    # sum, so each of the t - 1 transfers runs under a GEMM chunk and none is exposed
    model = GPTConfig(layers=1, hidden=512, heads=8, seq_len=512, vocab=512, dtype="bf16")
    training = TrainingConfig(numerics=False, global_batch=1, steps=1)
    cluster = preset("toy", nodes=1)
    t = 4
    result = run_strategy(cluster, model, training, replace(ON, tp=t))
    events = [e for e in result.trace.events if e.device == 0]
    exposed = [tuple(x) for x in result.run.steps[-1].workers[0].exposed]
    link = cluster.intra_node
    alpha, beta = link.latency, 1 / (link.bandwidth * link.efficiency)
    chunk = 512 // t * 512 * 2  # s/t tokens of h, bf16
    rings = [e for e in events if "[ring " in e.name]
    # per layer: qkv and fc1 forward, proj and fc2 input gradients (all-gathers);
    # proj and fc2 forward (reduce-scatters)
    assert len(rings) == 6 * (t - 1)
    for ring in rings:
        assert ring.end - ring.start == pytest.approx(
            closed_forms.send_recv(t, chunk, alpha, beta), rel=1e-12
        )
        assert not any(a < ring.end and ring.start < b for a, b in exposed), ring


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (Strategy("x", tp=4, tp_comm_overlap=True), "set sequence_parallel = true"),
        (Strategy("x", dp=4, tp_comm_overlap=True), "tp = 1 has none"),
    ],
)
def test_without_sequence_parallelism_or_tensor_parallelism_it_is_refused(strategy, message):
    with pytest.raises(LayoutError, match=message):
        run(GPT, strategy)


def test_the_cli_refuses_it_in_one_line(tmp_path, capsys):
    text = TINY_MLP + "[[strategy]]\nname = 'x'\ntp = 2\ntp_comm_overlap = true\n"
    assert_run_fails(tmp_path, capsys, text, "tp_comm_overlap")
