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
