"""Every overlap the runtime does is a named option: off, the communication it hid is
exposed; on or off, the numbers are single-device training's."""

from dataclasses import replace

import pytest

from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from tests.conftest import assert_matches_single, run, single_device

GPT = GPTConfig(layers=4, hidden=32, heads=4, seq_len=16, vocab=64, dtype="bf16")
MLP = MLPConfig(6, 64)
CASES = [
    (MLP, Strategy("ddp-buckets", dp=4, bucket_mb=0.005), "overlap_grad_reduce"),
    (MLP, Strategy("zero1", dp=4, zero=1, bucket_mb=0.005), "overlap_grad_reduce"),
    (MLP, Strategy("zero2", dp=4, zero=2, microbatches=2), "overlap_grad_reduce"),
    (MLP, Strategy("zero3", dp=4, zero=3), "prefetch_params"),
    (
        MLP,
        Strategy("zero1-params", dp=4, zero=1, overlap_param_gather=True),
        "overlap_param_gather",
    ),
    (GPT, Strategy("tp4-sp", tp=4, sequence_parallel=True), "async_tp"),
]


@pytest.mark.parametrize(
    ("model", "strategy", "option"), CASES, ids=lambda x: getattr(x, "name", "")
)
def test_turning_an_overlap_off_exposes_communication(model, strategy, option):
    cluster = preset("toy", nodes=1)
    on = run(model, strategy, cluster, steps=1, numerics=model is MLP)
    off = run(model, replace(strategy, **{option: False}), cluster, steps=1, numerics=model is MLP)
    assert on.metrics["overlap"][option] is True
    assert off.metrics["overlap"][option] is False
    assert set(on.metrics["overlap"]) == {
        "overlap_grad_reduce",
        "overlap_param_gather",
        "prefetch_params",
        "async_tp",
        "tp_comm_overlap",
        "ep_overlap",
    }
    assert off.metrics["exposed_comm_s"] > on.metrics["exposed_comm_s"]
    assert off.metrics["iteration_time_s"] > on.metrics["iteration_time_s"]
    assert off.metrics["comm_bytes"] == on.metrics["comm_bytes"]  # the same bytes, later


@pytest.mark.parametrize(
    ("model", "strategy", "option"),
    [case for case in CASES if case[0] is MLP],
    ids=lambda x: getattr(x, "name", ""),
)
def test_overlap_never_changes_the_numbers(model, strategy, option):
    reference = single_device(model)
    for value in (True, False):
        assert_matches_single(run(model, replace(strategy, **{option: value})), reference)
