"""The strategy schema is derived from the ``Strategy`` dataclass and the registries."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from simulator import comm
from simulator.errors import ScenarioError
from simulator.parallel.data import variant_names
from simulator.parallel.partition import PARTITIONS
from simulator.parallel.pipeline import schedule_names
from simulator.parallel.stage import RECOMPUTE
from simulator.parallel.strategy import Strategy
from simulator.scenario import parse as scenario
from simulator.scenario.parse import parse_scenario
from tests import doc

#: the scenario reference: one ``## `[table]` `` section per table
SCENARIOS = doc("scenarios.md")


def _section(title: str) -> str:
    """The text of the section headed ``## `title` ``, up to the next one."""
    return SCENARIOS.split(f"\n## `{title}`", 1)[1].split("\n## ", 1)[0]


def parse(tmp_path: Path, **strategy: object) -> Strategy:
    data = {
        "cluster": {"preset": "toy", "nodes": 4},
        "model": {"kind": "mlp", "layers": 4, "width": 4},
        "training": {"global_batch": 8, "steps": 1},
        "strategy": [{"name": "s", **strategy}],
    }
    return parse_scenario(data, "t.toml", tmp_path).strategies[0]


def test_the_schema_is_the_dataclass() -> None:
    fields = {f.name: f for f in dataclasses.fields(Strategy)}
    assert list(scenario.STRATEGY) == list(fields)
    for name, key in scenario.STRATEGY.items():
        assert key.doc == fields[name].metadata["doc"]


REGISTRIES = {
    "allreduce_algorithm": tuple(comm.ALGORITHMS["all_reduce"]),
    "partition": PARTITIONS,
    "recompute": RECOMPUTE,
    "schedule": tuple(schedule_names()),
    "data_parallel": variant_names(),
}


@pytest.mark.parametrize(
    ("key", "value"), [(k, v) for k, values in REGISTRIES.items() for v in values]
)
def test_every_value_a_registry_offers_is_accepted(tmp_path: Path, key: str, value: str) -> None:
    assert getattr(parse(tmp_path, **{key: value}), key) == value


def test_rabenseifner_is_accepted(tmp_path: Path) -> None:
    assert parse(tmp_path, allreduce_algorithm="rabenseifner", dp=2).allreduce_algorithm == (
        "rabenseifner"
    )


def test_a_schedule_file_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("0F0,0B0\n")
    assert parse(tmp_path, schedule="file:mine.csv").schedule == "file:mine.csv"


def test_values_outside_the_registries_name_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="allreduce_algorithm must be one of 'ring', 'tree'"):
        parse(tmp_path, allreduce_algorithm="butterfly")
    with pytest.raises(ScenarioError, match="unknown schedule 'zigzag'; choose one of 'naive'"):
        parse(tmp_path, schedule="zigzag")
    with pytest.raises(ScenarioError, match="order must name each of tp, dp and pp once"):
        parse(tmp_path, order="tp-tp-dp")


def _strategy_table_keys() -> set[str]:
    section = _section("[[strategy]]")
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {k for row in rows for k in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_the_strategy_table_documents_exactly_the_fields() -> None:
    assert _strategy_table_keys() == {f.name for f in dataclasses.fields(Strategy)}


def test_the_strategy_table_documents_the_registries_values() -> None:
    section = _section("[[strategy]]")
    for values in REGISTRIES.values():
        for value in values:
            assert f"`{value}`" in section, value


def test_every_limit_and_fault_key_is_documented() -> None:
    limits = _section("[limits]")
    for key in scenario.LIMITS:
        assert f"| `{key}` |" in limits, key
    faults = _section("[[fault]]")
    for kind, keys in scenario.FAULTS.items():
        assert f"| `{kind}` |" in faults
        for key in keys:
            assert f"`{key}`" in faults, (kind, key)
