"""The README documents every scenario key and every command, and shows two commands."""

import re
from pathlib import Path

from simulator.cli import build_parser
from simulator.scenario import parse as scenario

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


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
        k for t in tables for k in t if not any(form.format(k) in README for form in spellings)
    ]
    assert not missing, f"README does not document: {missing}"


def test_every_model_key_is_documented():
    import dataclasses

    from simulator.nn.models import model_kinds

    for kind, cls in model_kinds().items():
        assert f"`{kind}`" in README
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in README, f"{kind}.{f.name}"


def test_every_command_is_documented():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"python -m simulator {name}" in README, name


def test_quick_start_has_exactly_two_commands():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, flags=re.S)
    assert len(blocks) == 2
    assert "simulator run scenarios/quickstart.toml" in blocks[0]
    assert "pytest" in blocks[1] and ".[dev]" in blocks[1]
