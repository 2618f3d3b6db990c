"""plan(): the best layout computes what one device computes; results, files and order."""

import json

import pytest

import simulator
from simulator import GPTConfig, Strategy, TrainingConfig, preset, run_strategy
from simulator.experiment.runner import build_plan
from simulator.scenario.parse import load_scenario

GPT = GPTConfig(layers=4, hidden=16, heads=4, seq_len=8, vocab=32, dropout=0.1)
TRAINING = TrainingConfig(global_batch=8, steps=2, optimizer="adam", lr=0.01)
CLUSTER = preset("toy", nodes=1)
SPACE = {
    "max_tp": 2,
    "schedules": ("1f1b", "zb-h1"),
    "recompute": ("none", "full"),
    "zero": (0, 1),
    "sequence_parallel": (False,),
    "orders": ("tp-cp-dp-pp",),
    "microbatch_sizes": (2,),
}


@pytest.fixture(scope="module")
def result():
    return simulator.plan(CLUSTER, GPT, TRAINING, workers=1, **SPACE)


def test_the_best_layout_trains_like_one_device(result):
    single = run_strategy(CLUSTER, GPT, TRAINING, Strategy("single")).losses
    best = result.rows[0]
    assert best["status"] == "ok" and best["dp"] * best["tp"] * best["pp"] == 4
    assert best["loss"] == pytest.approx(single, rel=1e-9, abs=0)
    # the planner never proposes a layout that computes something else
    for row in result.rows:
        assert row["loss"] == pytest.approx(single, rel=1e-9, abs=0), row["name"]


def test_rows_are_sorted_fastest_first_with_the_interface_keys(result):
    data = result.to_json()
    assert list(data) == ["evaluated", "pruned", "layouts"]
    assert data["evaluated"] == len(data["layouts"]) > 1
    times = [r["iteration_time_s"] for r in data["layouts"]]
    assert times == sorted(times)
    keys = ["dp", "tp", "pp", "microbatches", "schedule", "chunks", "recompute"]
    keys += ["sequence_parallel", "zero", "status", "iteration_time_s", "mfu"]
    keys += ["peak_memory_bytes", "compute_fraction", "exposed_comm_fraction", "bubble_fraction"]
    assert all(k in data["layouts"][0] for k in keys)
    json.dumps(data)  # plain JSON


def test_to_frame_has_a_row_per_simulated_layout(result):
    frame = result.to_frame()
    assert len(frame) == result.evaluated
    assert list(frame["name"]) == [r["name"] for r in result.rows]


def test_written_files_and_a_best_scenario_that_runs(result, tmp_path):
    written = {p.name for p in result.write(tmp_path)}
    assert {"plan.csv", "plan.json", "pareto.png", "best.toml"} <= written
    assert json.loads((tmp_path / "plan.json").read_text()) == json.loads(
        json.dumps(result.to_json())
    )
    best = load_scenario(tmp_path / "best.toml")
    assert [s.name for s in best.strategies] == [s.name for s in result.best()]
    assert best.cluster == CLUSTER and best.model == GPT and best.training == TRAINING
    for s in best.strategies:
        build_plan(best.cluster, best.model, best.training, s)


def test_a_plan_scenario_file_with_flags_on_top(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        """
name = "tiny"
[cluster]
preset = "toy"
[model]
kind = "gpt"
layers = 2
hidden = 16
heads = 4
seq_len = 8
vocab = 32
[training]
numerics = false
global_batch = 8
steps = 1
[plan]
top = 2
max_pp = 1
zero = [0]
recompute = ["none"]
orders = ["tp-cp-dp-pp"]
fixed = {micro_batch_size = 4}
base = {partition = "uniform"}
"""
    )
    result = simulator.plan(path, workers=1, sequence_parallel=(False,))
    assert result.name == "tiny" and result.top == 2
    # b = 4 of a batch of 8: one or two replicas
    assert {(r["dp"], r["tp"], r["pp"]) for r in result.rows} == {(1, 4, 1), (2, 2, 1)}
    assert all(r["micro_batch_size"] == 4 for r in result.rows)
    assert all(s.partition == "uniform" for s in result.strategies.values())
    assert len(result.table().splitlines()) == 2 + 2


def test_pareto_front_and_picture(result):
    from simulator.planner.pareto import pareto_front

    points = [(2.0, 1.0), (1.0, 3.0), (3.0, 0.5), (2.5, 2.0), (1.0, 2.0)]
    assert pareto_front(points) == [4, 0, 2]  # lighter and slower, left to right
    figure = result.pareto()  # no path: the figure, for a notebook
    assert figure.axes[0].get_yscale() == "log"
