"""The Gantt chart says what the time was: its exposed communication is the metrics',
its labels name micro-batches, chunks, layers and collectives, its rows their
coordinates, and a large run shows a subset of rows and says so."""

import itertools

import matplotlib
import pytest

from simulator.experiment.runner import run_strategy
from simulator.hardware import preset
from simulator.hardware.faults import Fail, Straggler
from simulator.nn.abstract import AbstractConfig
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.parallel.training import TrainingConfig
from simulator.viz import plots
from simulator.viz.views import collective_labels, exposed_by_device, shown_devices, step_events
from tests.conftest import run

GPT = GPTConfig(layers=2, hidden=32, heads=4, seq_len=8, vocab=64)


def texts(fig) -> list[str]:
    """Every text the figure shows: titles, labels, ticks, legend entries."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


# -- exposed communication --------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "strategy", "cluster"),
    [
        (GPT, Strategy("tp4", tp=4), None),
        (GPT, Strategy("tp4-sp", tp=4, sequence_parallel=True), None),
        (MLPConfig(4, 64), Strategy("ddp", dp=4), None),
        (MLPConfig(4, 64), Strategy("ddp-buckets", dp=4, bucket_mb=0.01), None),
        (MLPConfig(4, 64), Strategy("zero3", dp=4, zero=3), None),
        (MLPConfig(4, 64), Strategy("replicated", dp=4, data_parallel="replicated"), None),
        (MLPConfig(4, 64), Strategy("dp8-folded", dp=8), preset("toy", nodes=2)),
        (GPT, Strategy("dp2-tp2-pp2", dp=2, tp=2, pp=2, microbatches=2), None),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_the_pictures_exposed_communication_is_the_metrics(model, strategy, cluster):
    """The chart draws the stretches the runtime recorded: they add up to the metrics'
    exposed_comm_s exactly, and lie in the device's idle time inside the step."""
    result = run(model, strategy, cluster=cluster or preset("toy", nodes=2), global_batch=8)
    devices = [d["device"] for d in result.metrics["devices"]]
    drawn = exposed_by_device(result, devices)
    events = step_events(result, devices)
    lo, hi = result.step_window
    tol = 1e-12 * (hi - lo)
    for d in result.metrics["devices"]:
        stretches = drawn[d["device"]]
        seconds = sum(b - a for a, b in stretches)
        assert seconds == pytest.approx(d["exposed_comm_s"], rel=1e-12, abs=1e-300)
        busy = [(e.start, e.end) for e in events[d["device"]][0]]
        for a, b in stretches:
            assert lo - tol <= a < b <= hi + tol
            assert all(b <= s + tol or a >= e - tol for s, e in busy), (d["device"], a, b)
        ordered = sorted(stretches)
        assert all(b <= a2 + tol for (_, b), (a2, _) in itertools.pairwise(ordered)), "overlap"
    assert any(drawn.values()), "on real links, some device waits for its own group"


# -- labels -----------------------------------------------------------------------------
def test_tensor_parallel_blocks_name_their_layer_and_the_lane_names_f_and_g():
    result = run(
        GPTConfig(layers=2, hidden=128, heads=8, seq_len=32, vocab=64),
        Strategy("tp4", tp=4),
        global_batch=8,
    )
    shown = texts(plots.gantt(result))
    assert any("L0 attn" in t or "layer0 attention" in t for t in shown)
    assert any("L1 mlp" in t or "layer1 mlp" in t for t in shown)
    assert any(t.startswith(("g AR", "g: all-reduce")) for t in shown)
    assert any(t.startswith(("f AR", "f: all-reduce")) for t in shown)
    assert any("d0 t3 p0" in t for t in shown)  # the row's coordinates


def test_collective_labels_name_the_operator_and_the_operation():
    assert collective_labels("g: reduce-scatter y (layer0 mlp)") == ("g: reduce-scatter y", "g RS")
    assert collective_labels("grad all_reduce") == ("grad all-reduce", "AR")


def test_chunks_are_told_apart_and_pipeline_sends_show_micro_batch_and_direction():
    slow_links = AbstractConfig(stages=4, forward_ms=1, backward_ms=1, weight_ms=1, comm_ms=0.4)
    result = run(
        slow_links,
        Strategy("zbv", pp=2, microbatches=2, schedule="zbv", chunks=2),
        numerics=False,
        global_batch=2,
        steps=1,
    )
    shown = texts(plots.gantt(result))
    assert any(t.endswith(" c1") for t in shown) and any(t.endswith(" c0") for t in shown)
    assert any(t.startswith("a0") and t.endswith("↓") for t in shown)  # activation, downstream
    assert any(t.startswith("a0") and t.endswith("↑") for t in shown)  # the V turns back up
    assert any(t.startswith("g1") for t in shown)  # a gradient of micro-batch 1
    assert "c1: the rank's second model chunk" in shown


def test_the_legend_explains_the_colours_and_the_title_the_three_parts():
    result = run(MLPConfig(4, 16), Strategy("1f1b", pp=2, microbatches=3), global_batch=6)
    shown = texts(plots.gantt(result))
    assert any("colour = micro-batch (0, 1, 2)" in t for t in shown)
    heading = next(t for t in shown if t.startswith("1f1b:"))
    assert "compute" in heading and "exposed comm" in heading and "bubble" in heading
    assert any(t.startswith("white: bubble") for t in shown)


def test_recompute_has_its_own_legend_entry():
    result = run(GPT, Strategy("r", pp=2, microbatches=2, recompute="full"), global_batch=4)
    assert "R recompute: a forward run again before its backward" in texts(plots.gantt(result))


def test_a_failed_device_and_a_straggler_are_marked():
    result = run_strategy(
        preset("toy", nodes=2),
        MLPConfig(8, 64),
        TrainingConfig(global_batch=16, steps=2),
        Strategy("dp2-pp4", dp=2, pp=4, microbatches=4),
        faults=[Straggler(device=2, factor=1.5), Fail(device=5, at_ms=0.05)],
    )
    assert result.status == "failed"
    shown = texts(plots.gantt(result))
    assert " device 5 fails" in shown and "device failed" in shown
    assert any("straggler x1.5" in t for t in shown)


# -- large runs -------------------------------------------------------------------------
def test_a_large_run_shows_a_subset_of_rows_and_says_which():
    result = run(
        MLPConfig(8, 64),
        Strategy("big", dp=64, tp=4, pp=4, microbatches=4),
        cluster=preset("toy", nodes=256),
        numerics=False,
        global_batch=256,
        steps=1,
    )
    shown, note = shown_devices(result)
    assert len(shown) == 4  # tp rank 0 of replica 0, every stage: the replicas are folded
    assert note.startswith("4 of 1024 devices") and "identical" in note
    fig = plots.gantt(result)
    assert any("showing 4 of 1024 devices" in t for t in texts(fig))


def test_unfolded_replicas_are_spread_from_the_first_to_the_last():
    result = run(
        MLPConfig(4, 16),
        Strategy("dp32", dp=32),
        cluster=preset("toy", nodes=8),
        global_batch=32,
        steps=1,
        fold_replicas=False,
    )
    shown, note = shown_devices(result)
    assert shown[0] == 0 and shown[-1] == 31 and len(shown) == 16
    assert "replicas" in note


def test_a_dense_chart_says_how_many_blocks_it_could_not_label():
    result = run(GPT, Strategy("m16", pp=2, microbatches=64), global_batch=64, steps=1)
    heading = next(t for t in texts(plots.gantt(result)) if t.startswith("m16:"))
    assert "unlabelled, too narrow:" in heading and "compute blocks" in heading


def test_rows_of_a_cluster_of_several_kinds_name_their_gpu():
    from tests.runtime.test_nodes import kinds

    cluster = kinds(1.0, 2.0, devices_per_node=2)
    result = run(MLPConfig(4, 16), Strategy("pp4", pp=4, microbatches=4), cluster=cluster)
    labels = {t for t in texts(plots.gantt(result)) if t.startswith("device ")}
    assert sum("\nx1\n" in t for t in labels) == 2 and sum("\nx2\n" in t for t in labels) == 2
