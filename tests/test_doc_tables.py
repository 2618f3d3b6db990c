"""The result tables and pictures the documentation shows are what the code gives today.

Each table in the README or a page under ``docs/`` follows a marker
``<!-- table: NAME -->`` and is what ``python -m simulator run`` (or ``sweep``)
prints for one scenario; each picture under ``docs/images/`` that a run draws
has a sidecar of the numbers it was drawn from (:mod:`simulator.docs_assets`).
These run the scenarios and fail, naming the command that remakes them, when a
change moved a number.
"""

from __future__ import annotations

import pytest

from simulator import comparison_table
from simulator import docs_assets as assets
from tests import DOCS, REPO

REMAKE = "python -m simulator.docs_assets"
RUNS = [t for t in assets.TABLES if t.kind == "run"]


def check_pictures(scenario: str, result) -> None:
    for image in (i for i in assets.PICTURES if i.scenario == scenario):
        shown, now = assets.read_sidecar(image), assets.numbers(image, result)
        assert shown == now, (
            f"docs/images/{image.name}.png is stale: it shows {shown}, the code now gives "
            f"{now}; run {REMAKE} {image.name}"
        )


def check_table(table: assets.Table, result) -> None:
    now = assets.table_text(table, result)
    assert assets.shown_table(table) == now, (
        f"the table {table.name} in {table.page} is stale; run {REMAKE} {table.name}; now:\n{now}"
    )


@pytest.mark.parametrize("table", RUNS, ids=lambda t: t.name)
def test_the_page_shows_what_the_scenario_prints(table: assets.Table) -> None:
    result = assets.results(table.scenario)
    check_table(table, result)
    check_pictures(table.scenario, result)


def test_the_sweep_table_and_picture_are_what_the_sweep_gives() -> None:
    """docs/planner.md's sweep over the network between nodes: its 25 GB/s rows are the
    layouts table's (docs/parallelism/hybrid.md), since that is DGX A100's network."""
    (table,) = [t for t in assets.TABLES if t.kind == "sweep"]
    result = assets.results(table.scenario)
    check_table(table, result)
    check_pictures(table.scenario, result)


def test_the_plans_picture_labels_the_layout_the_code_finds_fastest() -> None:
    """The search takes minutes; its fastest layout, simulated alone, takes seconds."""
    (image,) = [i for i in assets.PICTURES if i.kind == "pareto"]
    shown = assets.read_sidecar(image)
    assert shown is not None, f"docs/images/{image.name}.json is missing; run {REMAKE}"
    assert assets.fastest_alone(shown["strategy"]) == shown["fastest"], (
        f"docs/images/{image.name}.png is stale; run {REMAKE} {image.name}"
    )


def test_every_picture_has_its_sidecar_and_every_table_its_marker() -> None:
    for image in assets.PICTURES:
        assert assets.sidecar(image).exists(), image.name
        assert (assets.IMAGES / f"{image.name}.png").exists(), image.name
    for table in assets.TABLES:
        assert assets.shown_table(table) is not None, (table.name, table.page)
    used = {p.stem for p in assets.IMAGES.glob("*.png")}
    made = {i.name for i in assets.PICTURES}
    # the rest are the notebooks' pictures and the calibration benchmark's
    assert used - made == {f.stem for f in assets.IMAGES.glob("nb0*.png")} | {"calibration"}


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
