"""The shipped scenario files load, and the quick ones give what their comments promise."""

from pathlib import Path

import pytest

from simulator.experiment import run_scenario, run_strategy
from simulator.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_loads_and_plans(path):
    from simulator.parallel.plan import build_plan

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
