"""The README's result tables are what the scenarios print today.

Each table in the README is the comparison table ``python -m simulator run``
prints for one scenario; this runs the scenarios and fails with the table to
paste when a change moved a number.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import comparison_table, load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SCENARIOS = [
    "quickstart",
    "pipeline_schedules",
    "data_parallel",
    "tensor_parallel",
    "tiny_gpt",
    "gpt3_memory",
    "gpt3_175b_layouts",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_readme_shows_what_the_scenario_prints(name: str) -> None:
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    result = run_scenario(scenario)
    table = comparison_table(
        [r.metrics for r in result.results], scenario.cluster.device.memory_bytes
    )
    assert table in README, f"README table of scenarios/{name}.toml is stale; now:\n{table}"
