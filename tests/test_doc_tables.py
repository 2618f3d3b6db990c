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
    "long_context": DOCS / "parallelism" / "context.md",
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


def test_the_llama_page_shows_what_the_scenario_and_its_sweep_print() -> None:
    """docs/llama.md's two tables: the H100 run, and the sweep over B200s and the
    materialised kernel (whose first point is that run)."""
    from simulator.planner import sweep

    page = (DOCS / "llama.md").read_text()
    vary = {
        "cluster.preset": ["dgx-h100", "dgx-b200"],
        "model.attention": ["flash", "materialised"],
    }
    result = sweep(REPO / "scenarios" / "llama3_70b_h100.toml", vary, workers=1, progress=False)
    assert result.table() in page, f"the sweep in docs/llama.md is stale; now:\n{result.table()}"
    run = comparison_table(result.results[0], 80 * 2**30, ["fp8"])
    assert run in page, f"the run in docs/llama.md is stale; now:\n{run}"


def test_the_llama_page_gives_the_closed_forms_of_llama_3() -> None:
    """The Llama 3 table of docs/llama.md is :mod:`simulator.nn.accounting`'s, which the
    simulation meets exactly (tests/nn/test_accounting.py, notebook 6)."""
    from simulator.nn import accounting
    from simulator.nn.named import named_model

    page = (DOCS / "llama.md").read_text()
    for name in ("llama3-8b", "llama3-70b", "llama3-405b"):
        c = named_model(name).config
        row = (
            f"| `{name}` | {accounting.parameters(c):,} "
            f"| {accounting.model_flops_per_token(c) / 1e9:,.2f} "
            f"| {accounting.layer_stash_bytes(c, 1) / 2**20:,.0f} MiB "
            f"| {accounting.six_nd_ratio(c):.3f} |"
        )
        assert row in page, f"docs/llama.md's Llama 3 table is stale; now:\n{row}"
