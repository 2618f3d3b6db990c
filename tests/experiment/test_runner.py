"""Out of memory is a status, not a crash; the other strategies still run."""

from simulator.experiment.runner import run_scenario
from simulator.scenario.parse import parse_scenario

TINY_MEMORY = {
    "name": "oom",
    "cluster": {"preset": "toy", "device": {"memory_gib": 0.0002}},  # about 210 KB
    "model": {"kind": "mlp", "layers": 4, "width": 64},
    "training": {"global_batch": 8, "steps": 1},
    "strategy": [{"name": "single"}, {"name": "pipe", "pp": 4, "microbatches": 2}],
}


def test_a_device_that_is_too_small_gives_status_oom_and_the_breakdown():
    result = run_scenario(parse_scenario(TINY_MEMORY))
    single, pipe = result["single"], result["pipe"]
    assert single.status == "oom"
    message = single.metrics["message"]
    assert message.startswith("device 0 is out of memory")
    assert "parameters" in message and "gradients" in message and "has 209.72 KiB" in message
    assert pipe.status == "ok"  # a quarter of the model per device fits
    assert single.metrics["devices"][0]["memory"]["parameters"] == 4 * (64 * 64 + 64) * 8
