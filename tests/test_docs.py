"""The documentation documents every scenario key, every command and every results field.

The keys come from the schema (:mod:`simulator.scenario.parse`), the commands
from the parser, the fields from a real run, so a new key, command or field
fails here until a page explains it.
"""

import dataclasses
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from simulator import MLPConfig, Strategy, TrainingConfig, preset, run_strategy
from simulator.cli import build_parser
from simulator.nn.models import model_kinds
from simulator.planner.files import PLAN, SWEEP
from simulator.scenario import parse as scenario
from tests import REPO, doc

SCENARIOS = doc("scenarios.md")


def test_every_scenario_key_is_documented():
    tables = [
        scenario.TOP,
        scenario.CLUSTER,
        scenario.NODE,
        scenario.DEVICE,
        scenario.LINK,
        scenario.TRAINING,
        scenario.STRATEGY,
    ]
    spellings = ("`{}`", "[{}]", ".{}]", "[[{}]]")
    missing = [
        k for t in tables for k in t if not any(form.format(k) in SCENARIOS for form in spellings)
    ]
    assert not missing, f"docs/scenarios.md does not document: {missing}"


def test_every_model_key_is_documented():
    for kind, cls in model_kinds().items():
        assert f"`{kind}`" in SCENARIOS
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in SCENARIOS, f"{kind}.{f.name}"


def test_every_command_is_documented():
    cli = doc("cli.md")
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"python -m simulator {name}" in cli, name


def test_every_results_field_is_documented():
    results = doc("results.md")
    run = run_strategy(
        preset("toy"),
        MLPConfig(layers=2, width=4),
        TrainingConfig(global_batch=4, steps=1),
        Strategy("s", pp=2, microbatches=2),
    )
    device = run.metrics["devices"][0]
    keys = [*run.metrics, *device, *device["memory"]]
    missing = [k for k in keys if f"`{k}`" not in results and f'"{k}"' not in results]
    assert not missing, f"docs/results.md does not document: {missing}"


def test_every_plan_and_sweep_key_is_documented():
    planner = doc("planner.md")
    plan = planner.split("\n## `[plan]`", 1)[1].split("\n## ", 1)[0]
    sweep = planner.split("\n## Sweeps", 1)[1]
    assert [k for k in PLAN if f"`{k}`" not in plan] == []
    assert [k for k in SWEEP if f"| `{k}` |" not in sweep] == []


def test_the_python_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of docs/python-api.md runs as shown (from a fresh folder
    beside the scenarios, so the files it writes land in ``tmp_path``)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").symlink_to(REPO / "scenarios")
    blocks = re.findall(r"```python\n(.*?)```", doc("python-api.md"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/python-api.md", "exec"), {})
    plt.close("all")
    assert (tmp_path / "1f1b.trace.json").exists()
