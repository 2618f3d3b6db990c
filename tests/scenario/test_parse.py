"""Scenario files: good ones load; bad ones give one line naming the key."""

import math
from pathlib import Path

import pytest

from simulator.errors import ScenarioError
from simulator.hardware import GB, GiB
from simulator.scenario.parse import load_scenario, parse_scenario
from tests.conftest import scenario_file

GOOD = """
name = "t"
seed = 3
[cluster]
preset = "dgx-a100"
nodes = 2
[cluster.device]
memory_gib = 40
launch_us = 0
[cluster.inter_node]
bandwidth_gbs = inf
latency_us = 0
[model]
kind = "mlp"
layers = 4
width = 32
[training]
global_batch = 8
steps = 2
optimizer = "adam"
lr = 0.001
[[strategy]]
name = "a"
[[strategy]]
name = "b"
pp = 2
microbatches = 4
schedule = "gpipe"
"""


def write(tmp_path, text):
    return Path(scenario_file(tmp_path, text))


def test_a_good_scenario_loads_with_overrides(tmp_path):
    s = load_scenario(write(tmp_path, GOOD))
    assert s.name == "t" and s.training.seed == 3 and s.training.optimizer == "adam"
    assert s.cluster.num_devices == 16
    assert s.cluster.device.memory_bytes == 40 * GiB and s.cluster.device.launch_overhead == 0
    assert math.isinf(s.cluster.inter_node.bandwidth) and s.cluster.inter_node.latency == 0
    assert s.cluster.intra_node.bandwidth == 300 * GB
    assert [x.name for x in s.strategies] == ["a", "b"] and s.strategies[1].pp == 2
    assert s.model.layers == 4


def test_nics_per_node_shares_adapters(tmp_path):
    s = load_scenario(write(tmp_path, GOOD.replace("nodes = 2", "nodes = 2\nnics_per_node = 4")))
    assert s.cluster.nics == 4 and s.cluster.nic_of(1) == s.cluster.nic_of(0) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("width = 32", "widht = 32"), "unknown key 'widht' in [model] (did you mean 'width'?)"),
        (("steps = 2", 'steps = "two"'), "[training] steps must be an integer >= 1, got 'two'"),
        (("steps = 2", "steps = true"), "[training] steps must be an integer >= 1, got True"),
        (("layers = 4", "layers = -4"), "[model] layers must be an integer >= 1, got -4"),
        (
            ("memory_gib = 40", "memory_gib = -1"),
            "[cluster.device] memory_gib must be a number in [1e-09, 1e+09] or inf, got -1",
        ),
        (('preset = "dgx-a100"', 'preset = "tpu"'), "unknown cluster preset 'tpu'"),
        (('optimizer = "adam"', 'optimizer = "lamb"'), "optimizer must be one of 'sgd', 'adam'"),
        (('name = "b"', 'name = "a"'), "name 'a' is used twice"),
        (('kind = "mlp"', 'kind = "rnn"'), "[model] kind must be one of"),
        (("nodes = 2", "nodes = 2\nnics_per_node = 9"), "nics_per_node must be 1 to"),
        (("nodes = 2", "nodes = 2\nnics_per_node = 0"), "nics_per_node must be"),
    ],
)
def test_bad_values_name_the_key(tmp_path, change, message):
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, GOOD.replace(*change)))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_toml_syntax(tmp_path):
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="invalid TOML"):
        load_scenario(write(tmp_path, "name = [unclosed"))


def test_a_scenario_needs_a_model_and_a_strategy():
    with pytest.raises(ScenarioError, match=r"add a \[model\] table"):
        parse_scenario({"strategy": [{"name": "x"}]})
    with pytest.raises(ScenarioError, match="add at least one"):
        parse_scenario({"model": {"kind": "mlp"}})
