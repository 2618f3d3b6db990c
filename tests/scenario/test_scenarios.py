"""The shipped scenario files load, and the quick ones give what their comments promise."""

import pytest

from simulator.experiment.runner import run_scenario, run_strategy
from simulator.scenario.parse import load_scenario
from tests import REPO

SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_loads_and_plans(path):
    from simulator.parallel.build import build_plan

    s = load_scenario(path)
    for strategy in s.strategies:
        build_plan(s.cluster, s.model, s.training, strategy, s.base_dir)


def test_quickstart_pipelines_match_the_single_device():
    result = run_scenario(load_scenario(SCENARIOS[0].parent / "quickstart.toml"))
    single = result["single"].losses
    for name in ("gpipe", "1f1b"):
        assert result[name].losses == pytest.approx(single, rel=1e-9)
    assert (
        result["1f1b"].metrics["peak_memory_bytes"] < result["gpipe"].metrics["peak_memory_bytes"]
    )


def test_gpt3_on_one_device_reports_its_breakdown_and_runs_out_of_memory():
    s = load_scenario(SCENARIOS[0].parent / "gpt3_memory.toml")
    result = run_strategy(s.cluster, s.model, s.training, s.strategies[0])
    assert result.status == "oom"
    psi = result.metrics["parameters"]
    memory = result.metrics["devices"][0]["memory"]
    # mixed-precision Adam: 2 + 2 + 12 bytes per parameter (ZeRO paper, sec. 3.1)
    assert (memory["parameters"], memory["gradients"], memory["optimizer"]) == (
        2 * psi,
        2 * psi,
        12 * psi,
    )
    b, s_, h, a, L = 1, 2048, 12288, 96, 96
    per_layer = s_ * b * h * (34 + 5 * a * s_ / h)  # Korthikanti et al. 2022, table 2
    assert memory["activations_peak"] > L * per_layer
    assert "device 0 is out of memory" in result.metrics["message"]
    assert "optimizer 1.91 TiB" in result.metrics["message"]


def test_heterogeneous_nodes_give_what_the_scenario_promises():
    result = run_scenario(load_scenario(SCENARIOS[0].parent / "heterogeneous.toml"))
    step = {r.name: r.metrics["iteration_time_s"] for r in result.results}
    assert step["pipe-balanced"] < 0.8 * step["pipe-uniform"]
    assert result["pipe-balanced"].metrics["folded_replicas"] == 8
    # the H100 replicas of dp4-tp8 wait for the A100 ones; two H100 nodes alone are
    # slower, but not by much
    dp = result["dp4-tp8"].metrics
    assert dp["folded_replicas"] == 1
    h100, a100 = dp["devices"][0], dp["devices"][16]
    assert h100["bubble_s"] > 0.3 * dp["iteration_time_s"] > 1e9 * a100["bubble_s"]
    assert step["dp4-tp8"] < step["dp2-tp8-h100"] < 1.2 * step["dp4-tp8"]
