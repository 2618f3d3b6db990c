"""sweep(): the grid, dotted keys, one result per point and strategy, failures recorded."""

import pytest

import simulator
from simulator.errors import ScenarioError
from simulator.planner.sweep import apply, grid

SCENARIO = """
name = "tiny"
[cluster]
preset = "toy"
nodes = 1
[model]
kind = "mlp"
layers = 4
width = 16
[training]
global_batch = 8
steps = 1
[[strategy]]
name = "single"
[[strategy]]
name = "dp8"
dp = 8
[sweep]
vary = {"cluster.nodes" = [1, 2], "cluster.inter_node.bandwidth_gbs" = [5, 50]}
"""


def test_grid_is_the_product_first_key_slowest():
    points = grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert points == [{"a": a, "b": b} for a in (1, 2) for b in "xyz"]


def test_zip_pairs_the_values_and_needs_equal_lengths():
    assert grid({"a": [1, 2], "b": [3, 4]}, zipped=True) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    with pytest.raises(ScenarioError, match="a has 2, b has 1"):
        grid({"a": [1, 2], "b": [3]}, zipped=True)


def test_dotted_keys_make_tables_and_reach_every_strategy():
    data = {"strategy": [{"name": "a"}, {"name": "b"}]}
    apply(data, "cluster.inter_node.bandwidth_gbs", 50)
    apply(data, "strategy.microbatches", 4)
    assert data["cluster"] == {"inter_node": {"bandwidth_gbs": 50}}
    assert [s["microbatches"] for s in data["strategy"]] == [4, 4]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "s.toml"
    path.write_text(SCENARIO)
    return simulator.sweep(path, workers=1)


def test_one_result_per_point_and_strategy(result):
    data = result.to_json()
    assert [p["values"] for p in data["points"]] == grid(
        {"cluster.nodes": [1, 2], "cluster.inter_node.bandwidth_gbs": [5, 50]}
    )
    assert all([r["strategy"] for r in p["results"]] == ["single", "dp8"] for p in data["points"])
    # dp8 needs two toy nodes: recorded as an error at nodes = 1, the sweep goes on
    assert [p["results"][1]["status"] for p in data["points"]] == ["error"] * 2 + ["ok"] * 2
    assert len(result.to_frame()) == 8


def test_the_network_only_matters_across_nodes(result):
    frame = result.to_frame().set_index(
        ["cluster.nodes", "cluster.inter_node.bandwidth_gbs", "strategy"]
    )
    single = frame.loc[(1, 5, "single"), "iteration_time_s"]
    assert frame.loc[(1, 50, "single"), "iteration_time_s"] == single
    assert (
        frame.loc[(2, 50, "dp8"), "iteration_time_s"] < frame.loc[(2, 5, "dp8"), "iteration_time_s"]
    )


def test_files(result, tmp_path):
    names = {p.name for p in result.write(tmp_path)}
    assert names == {"sweep.csv", "sweep.json", "sweep.png"}
    header = (tmp_path / "sweep.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["cluster.nodes", "cluster.inter_node.bandwidth_gbs", "strategy", "status"]


def test_a_value_a_key_does_not_allow_stops_before_running(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    with pytest.raises(ScenarioError, match=r"nodes must be an integer in \[1, 1e\+09\], got 0"):
        simulator.sweep(path, {"cluster.nodes": [1, 0]})
    with pytest.raises(ScenarioError, match="unknown key 'nodez'"):
        simulator.sweep(path, {"cluster.nodez": [1]})
