"""The files of a run: the same bytes whether drawn in turn or in child processes
while the next strategy simulates; a failure in a child is reported, not lost."""

import os

import pytest

from simulator.experiment.runner import ScenarioResult
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from simulator.viz import plots
from simulator.viz.outputs import FileWriter, write_outputs
from tests.conftest import run

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


@pytest.fixture(scope="module")
def result():
    return ScenarioResult(
        "files",
        [
            run(MLPConfig(4, 16), Strategy("single"), steps=1),
            run(MLPConfig(4, 16), Strategy("pipe", pp=2, microbatches=2), steps=1),
        ],
    )


@needs_fork
def test_files_drawn_in_children_are_the_files_drawn_in_turn(result, tmp_path):
    alone = write_outputs(result, tmp_path / "a", workers=1)
    forked = write_outputs(result, tmp_path / "b", workers=2)
    assert [p.name for p in alone] == [p.name for p in forked]
    assert alone[0].name == "results.json" and len(alone) == 8
    for a, b in zip(alone, forked, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


@needs_fork
def test_a_child_that_fails_is_reported_with_its_strategy(result, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise ValueError("no ink")

    monkeypatch.setattr(plots, "memory", broken)
    failed = pytest.raises(RuntimeError, match=r"strategy 'single' failed:(.|\n)*no ink")
    with failed, FileWriter(tmp_path, workers=2) as files:
        for r in result.results:
            files.add(r)
        files.finish(result)
