from simulator.experiment.runner import ScenarioResult
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.viz.outputs import write_outputs
from tests.conftest import run

PNG = b"\x89PNG\r\n\x1a\n"


def test_gantt_memory_and_compare_pictures_are_written(tmp_path):
    result = ScenarioResult(
        "pics",
        [
            run(MLPConfig(4, 16), Strategy("single")),
            run(MLPConfig(4, 16), Strategy("pipe", pp=4, microbatches=4, schedule="gpipe")),
        ],
    )
    written = write_outputs(result, tmp_path)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 5
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000  # a real picture, not a blank one


def test_the_memory_plot_stacks_the_ledgers_categories():
    """The categories read back from the ledger's ``(time, category, delta)`` record add
    up to the bytes in use after every change, and the plot names each category."""
    import matplotlib

    from simulator.viz import plots

    result = run(
        MLPConfig(4, 32),
        Strategy("zero1", dp=2, zero=1, microbatches=2),
        global_batch=8,
        optimizer="adam",
    )
    ledger = result.run.memory[0]
    times, held = plots.category_series(ledger, result.step_window[1])
    total = sum(held.values())
    for t, used in ledger.samples:
        assert total[times.searchsorted(t, side="right") - 1] == used
    assert held["optimizer"][-1] > 0 and held["activations"].max() > 0
    fig = plots.memory(result)
    texts = {t.get_text() for t in fig.findobj(matplotlib.text.Text)}
    for name in ("parameters", "gradients", "optimizer state"):
        assert name in texts
    assert any(t.startswith("activations") for t in texts)


def test_compare_uses_the_three_words():
    import matplotlib

    from simulator.viz import plots

    result = ScenarioResult(
        "words",
        [run(MLPConfig(4, 16), Strategy("single")), run(MLPConfig(4, 16), Strategy("dp", dp=2))],
    )
    texts = [t.get_text() for t in plots.compare(result).findobj(matplotlib.text.Text)]
    assert any(t.startswith("compute") for t in texts)
    assert any(t.startswith("exposed communication") for t in texts)
    assert any(t.startswith("bubble") for t in texts)
    assert "words: strategies, fastest first" in texts


def test_compare_of_one_strategy_does_not_speak_of_an_order():
    import matplotlib

    from simulator.viz import plots

    result = ScenarioResult("alone", [run(MLPConfig(4, 16), Strategy("single"))])
    texts = [t.get_text() for t in plots.compare(result).findobj(matplotlib.text.Text)]
    assert "alone: one strategy" in texts
    assert not any("fastest first" in t for t in texts)


def test_every_memory_panel_is_scaled_to_its_own_peak():
    """A layer-wise pipeline's stages hold very different amounts: each panel's axis
    reaches its own peak (the first stage's KiB and the middle stages' MiB alike),
    and the peak is drawn."""
    from simulator.nn.gpt import GPTConfig
    from simulator.viz import plots

    gpt = GPTConfig(layers=4, hidden=32, heads=4, seq_len=8, vocab=64)
    result = run(gpt, Strategy("pp4", pp=4, schedule="naive"), optimizer="adam")
    panels, _ = plots.memory_panels(result)
    peaks = {p["peak_bytes"] for p in panels}
    assert max(peaks) > 1.1 * panels[0]["peak_bytes"]  # the case a shared axis got wrong
    fig = plots.memory(result)
    for ax, panel in zip(fig.axes, panels, strict=False):
        top = ax.get_ylim()[1] * panel["scale"]
        assert panel["peak_bytes"] <= top <= 1.5 * panel["peak_bytes"]
    assert "peak of the device" in {t.get_text() for t in fig.legends[0].get_texts()}


def test_compare_marks_runs_that_did_not_finish_alike_and_last():
    from simulator.experiment.runner import run_strategy
    from simulator.hardware import preset
    from simulator.hardware.faults import Fail
    from simulator.parallel.training import TrainingConfig
    from simulator.viz import plots

    failed = run_strategy(
        preset("toy", nodes=2),
        MLPConfig(8, 64),
        TrainingConfig(global_batch=16, steps=2),
        Strategy("fails", dp=2, pp=4, microbatches=4),
        faults=[Fail(device=5, at_ms=0.05)],
    )
    ok = [run(MLPConfig(8, 64), Strategy(n, dp=d)) for n, d in (("a", 1), ("b", 2))]
    rows, _, memory_unit = plots.compare_rows(ScenarioResult("mixed", [failed, *ok]))
    assert [r["name"] for r in rows][-1] == "fails"
    assert rows[-1]["mark"] == "FAILED" and rows[-1]["step_text"].endswith("FAILED")
    assert rows[-1]["peak_text"].endswith("FAILED")
    assert all(not r["mark"] for r in rows[:-1])
    # one unit and one number of decimals for every step, and for every peak
    assert all(len(r["step_text"].split()[0].split(".")[1]) == 3 for r in rows)
    assert all(r["peak_text"].split()[1] == memory_unit for r in rows)
    steps = [r["step"] for r in rows[:-1]]
    assert steps == sorted(steps)


def test_sweep_and_pareto_axes_read_as_words_and_units():
    from simulator.planner.axes import result_axis, scenario_axis
    from simulator.planner.pareto import scales

    assert result_axis("iteration_time_s", [0.002, 0.0011]) == ("step time (ms)", 1e-3)
    assert result_axis("peak_memory_bytes", [5 * 2**20]) == ("peak memory per device (MiB)", 2**20)
    assert result_axis("mfu", [0.4]) == ("MFU (%)", 0.01)
    assert scenario_axis("cluster.inter_node.bandwidth_gbs").startswith("bandwidth between nodes")
    assert scenario_axis("strategy.bucket_mb") == "bucket (MB)"
    rows = [
        {"peak_memory_bytes": 5 * 2**20, "iteration_time_s": 9e-4, "status": "ok"},
        {"peak_memory_bytes": 6 * 2**20, "iteration_time_s": 1.5e-3, "status": "ok"},
    ]
    u = scales(rows, 4 * 2**30)  # a tiny model: MiB and ms, the 4 GiB line far off
    assert (u["memory_unit"], u["time_unit"], u["show_capacity"]) == ("MiB", "ms", False)
