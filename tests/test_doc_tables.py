"""The result tables the documentation shows are what the scenarios print today.

Each table in the README or a page under ``docs/`` is the comparison table
``python -m simulator run`` prints for one scenario; this runs the scenarios
and fails with the table to paste when a change moved a number.
"""

from __future__ import annotations

import pytest

from simulator import comparison_table, load_scenario, run_scenario
from tests import DOCS, REPO

#: scenario -> the page that shows its table
PAGES = {
    "quickstart": REPO / "README.md",
    "pipeline_schedules": DOCS / "parallelism" / "pipeline.md",
    "data_parallel": DOCS / "parallelism" / "data.md",
    "tensor_parallel": DOCS / "parallelism" / "tensor.md",
    "tiny_gpt": DOCS / "models.md",
    "gpt3_memory": DOCS / "models.md",
    "gpt3_175b_layouts": DOCS / "parallelism" / "hybrid.md",
}


@pytest.mark.parametrize("name", PAGES)
def test_the_page_shows_what_the_scenario_prints(name: str) -> None:
    scenario = load_scenario(REPO / "scenarios" / f"{name}.toml")
    result = run_scenario(scenario)
    table = comparison_table(
        [r.metrics for r in result.results], scenario.cluster.device.memory_bytes
    )
    page = PAGES[name]
    assert table in page.read_text(), (
        f"the table of scenarios/{name}.toml in {page.relative_to(REPO)} is stale; now:\n{table}"
    )
