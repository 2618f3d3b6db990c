"""``overlap_param_gather``: ZeRO-1 and 2 gather the updated parameters beside the next
step's forward (:mod:`simulator.runtime.data.zero`), all launched as the step starts
(``align_param_gather``) or one bucket ahead: the same training, the same bytes, less
exposed communication -- and, with a single bucket, nothing to hide behind."""

from dataclasses import replace

import pytest

from simulator import GPTConfig, MLPConfig
from simulator.hardware import preset
from simulator.parallel import Strategy
from tests.conftest import assert_matches_single, assert_run_fails, run, single_device

MODEL = MLPConfig(layers=6, width=16)


@pytest.mark.parametrize(
    ("strategy", "fold"),
    [
        (Strategy("zero1", dp=4, zero=1), True),
        (Strategy("zero1-buckets", dp=2, zero=1, bucket_mb=0.001, microbatches=2), True),
        (Strategy("zero2", dp=4, zero=2, microbatches=2), True),
        (Strategy("pipeline", dp=2, pp=2, microbatches=2, zero=1, bucket_mb=0.001), True),
        (Strategy("unfolded", dp=2, pp=3, microbatches=4, zero=2), False),
    ],
    ids=lambda x: x.name if isinstance(x, Strategy) else str(x),
)
def test_overlapped_gathers_reproduce_single_device_training(strategy, fold):
    reference = single_device(MODEL, steps=3)
    for align in (True, False):  # every gather at the start, or one bucket ahead
        s = replace(strategy, overlap_param_gather=True, align_param_gather=align)
        assert_matches_single(run(MODEL, s, steps=3, fold_replicas=fold), reference)
        # each worker starting its next step as soon as its own ends (no barrier)
        free = run(MODEL, s, steps=3, fold_replicas=fold, step_barrier=False)
        assert_matches_single(free, reference)


GPT = GPTConfig(layers=4, hidden=256, heads=4, seq_len=128, vocab=512, dtype="bf16")


def _pair(strategy: Strategy, align: bool = True) -> tuple[dict, dict]:
    out = []
    for overlap in (False, True):
        s = replace(strategy, overlap_param_gather=overlap, align_param_gather=align)
        out.append(
            run(GPT, s, cluster=preset("toy", nodes=2), numerics=False, global_batch=16).metrics
        )
    return out[0], out[1]


@pytest.mark.parametrize("align", [True, False])
def test_a_single_bucket_has_nothing_to_hide_behind(align):
    # one bucket: its gather is the first thing the step waits for, so the step only
    # moves it from the end to the start -- every step as long, as exposed
    after, before = _pair(Strategy("one", dp=4, zero=1, bucket_mb=1000), align)
    assert before["iteration_time_s"] == pytest.approx(after["iteration_time_s"], rel=1e-12)
    assert before["exposed_comm_s"] == pytest.approx(after["exposed_comm_s"], rel=1e-12)
    assert before["comm_bytes"] == after["comm_bytes"]


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("zero", [1, 2])
def test_block_buckets_hide_all_but_the_first_gather(zero, align):
    after, before = _pair(Strategy("blocks", dp=4, zero=zero, microbatches=2), align)
    assert before["comm_bytes"] == after["comm_bytes"]  # the same gathers, moved
    assert before["exposed_comm_s"] < after["exposed_comm_s"]
    assert before["iteration_time_s"] < after["iteration_time_s"]


@pytest.mark.parametrize("zero", [0, 3])
def test_it_needs_a_zero_that_gathers_after_the_step(tmp_path, capsys, zero):
    text = f"""
[cluster]
preset = "toy"
[model]
kind = "mlp"
layers = 2
width = 8
[training]
global_batch = 8
[[strategy]]
name = "x"
dp = 2
zero = {zero}
overlap_param_gather = true
"""
    assert_run_fails(tmp_path, capsys, text, "overlap_param_gather")


def test_gathers_one_bucket_ahead_delay_a_pipelines_fill():
    # slow data-parallel links (across nodes; the pipeline inside them): one bucket ahead
    # of the forward (Megatron-Core r0.8), each stage's first forward waits for its
    # gathers in turn, and the step is longer than with the gather after the update;
    # launched all at once as the step starts, they run while the stages wait
    model = replace(GPT, layers=8)
    toy = preset("toy", nodes=4)
    slow = replace(toy, inter_node=replace(toy.inter_node, bandwidth=1e8))
    base = Strategy("p", dp=4, pp=4, microbatches=8, zero=1, order="tp-pp-dp")

    def step(**options: bool) -> float:
        s = replace(base, **options)
        return run(model, s, cluster=slow, numerics=False, global_batch=64).metrics[
            "iteration_time_s"
        ]

    after = step()
    ahead = step(overlap_param_gather=True, align_param_gather=False)
    aligned = step(overlap_param_gather=True, align_param_gather=True)
    assert after < ahead and aligned < ahead
