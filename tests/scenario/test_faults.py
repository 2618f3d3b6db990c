"""``[[fault]]`` tables: stragglers, slow links and failures, checked against the cluster."""

from __future__ import annotations

import math
from typing import Any

import pytest

from simulator.errors import ScenarioError
from simulator.hardware.faults import Fail, SlowLink, Straggler
from simulator.scenario.parse import parse_scenario


def parse(*faults: dict[str, Any]) -> tuple:
    data = {
        "cluster": {"preset": "toy", "nodes": 2},  # 2 nodes x 4 devices
        "model": {"kind": "mlp", "layers": 2, "width": 4},
        "strategy": [{"name": "a"}],
        "fault": list(faults),
    }
    return parse_scenario(data, "f.toml").faults


def test_the_three_kinds_parse_into_their_dataclasses() -> None:
    faults = parse(
        {"kind": "straggler", "device": 3, "factor": 1.5, "jitter": 0.1},
        {"kind": "slow_link", "node": 1, "factor": 0.25},
        {"kind": "slow_link", "device": 7, "factor": 0.5},
        {"kind": "fail", "device": 3, "at_ms": 12.0},
    )
    assert faults == (
        Straggler(device=3, factor=1.5, jitter=0.1),
        SlowLink(factor=0.25, node=1),
        SlowLink(factor=0.5, device=7),
        Fail(device=3, at_ms=12.0),
    )
    assert parse({"kind": "straggler", "device": 0, "factor": 2}) == (Straggler(0, 2, 0.0),)


def test_a_scenario_without_faults_has_none() -> None:
    assert parse() == ()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"device": 1}, "[[fault]] #1 needs kind = one of 'straggler', 'slow_link', 'fail'"),
        ({"kind": "meteor"}, "[[fault]] #1 kind must be one of 'straggler', 'slow_link', 'fail'"),
        ({"kind": "straggler"}, "[[fault]] #1 (straggler) needs device and factor"),
        ({"kind": "fail", "device": 1}, "[[fault]] #1 (fail) needs at_ms"),
        (
            {"kind": "straggler", "device": 1, "factor": 1.5, "at_ms": 3},
            "unknown key 'at_ms' in [[fault]] #1 (straggler); allowed: kind, device, factor, "
            "jitter",
        ),
        (
            {"kind": "straggler", "device": 8, "factor": 1.5},
            "[[fault]] #1 (straggler) device = 8 is not in the cluster, which has devices 0 to 7",
        ),
        (
            {"kind": "slow_link", "node": 2, "factor": 0.5},
            "[[fault]] #1 (slow_link) node = 2 is not in the cluster, which has nodes 0 to 1",
        ),
        (
            {"kind": "fail", "device": -1, "at_ms": 1},
            "[[fault]] #1 (fail) device must be an integer >= 0, got -1",
        ),
        (
            {"kind": "straggler", "device": 1, "factor": 0.5},
            "[[fault]] #1 (straggler) factor must be a number in [1, 1000], got 0.5",
        ),
        (
            {"kind": "straggler", "device": 1, "factor": math.inf},
            "factor must be a number in [1, 1000], got inf",
        ),
        (
            {"kind": "straggler", "device": 1, "factor": 2, "jitter": -0.1},
            "jitter must be a number in [0, 1], got -0.1",
        ),
        (
            {"kind": "slow_link", "device": 1, "factor": 0.0},
            "[[fault]] #1 (slow_link) factor must be a number in [0.001, 1], got 0.0",
        ),
        ({"kind": "slow_link", "device": 1, "factor": 2}, "factor must be a number in [0.001, 1]"),
        ({"kind": "slow_link", "factor": 0.5}, "names either device = D (its port) or node = N"),
        (
            {"kind": "slow_link", "device": 1, "node": 0, "factor": 0.5},
            "not both and not neither",
        ),
        (
            {"kind": "fail", "device": 1, "at_ms": math.nan},
            "[[fault]] #1 (fail) at_ms must be a number in [0, 1e+12], got nan",
        ),
        (
            {"kind": "fail", "device": 1, "at_ms": "soon"},
            "at_ms must be a number in [0, 1e+12], got 'soon'",
        ),
        ({"kind": "fail", "device": True, "at_ms": 1}, "device must be an integer >= 0, got True"),
    ],
)
def test_bad_faults_name_the_key_and_what_is_allowed(fault: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(fault)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_one_fault_of_a_kind_per_target() -> None:
    fail = {"kind": "fail", "device": 2, "at_ms": 1.0}
    with pytest.raises(ScenarioError, match="#2: a second fail fault on device 2"):
        parse(fail, {**fail, "at_ms": 5.0})
    # different kinds on one device, or one kind on a device and on its node, are fine
    parse(fail, {"kind": "straggler", "device": 2, "factor": 2})
    parse(
        {"kind": "slow_link", "device": 0, "factor": 0.5},
        {"kind": "slow_link", "node": 0, "factor": 0.5},
    )


def test_fault_must_be_a_list_of_tables() -> None:
    data = {"model": {"kind": "mlp"}, "strategy": [{"name": "a"}], "fault": 3}
    with pytest.raises(ScenarioError, match="fault must be a list, got 3"):
        parse_scenario(data)
    data["fault"] = [3]
    with pytest.raises(ScenarioError, match=r"\[\[fault\]\] #1 must be a table, got 3"):
        parse_scenario(data)


def test_a_toml_file_with_faults(tmp_path) -> None:
    from simulator.scenario.parse import load_scenario

    path = tmp_path / "faults.toml"
    path.write_text(
        """
[cluster]
preset = "toy"
[model]
kind = "mlp"
[[strategy]]
name = "a"
[[fault]]
kind = "straggler"
device = 3
factor = 1.5
[[fault]]
kind = "fail"
device = 0
at_ms = 12.0
"""
    )
    assert load_scenario(path).faults == (Straggler(3, 1.5), Fail(0, 12.0))
