"""The shipped plan and sweep scenarios load, and their layouts can be planned."""

import copy

import pytest

from simulator.parallel.build import build_plan
from simulator.planner.files import load_plan, read_toml, sweep_settings
from simulator.planner.prune import Pruner
from simulator.planner.space import layouts
from simulator.planner.sweep import apply, grid
from simulator.scenario.parse import parse_scenario
from tests import REPO

FOLDER = REPO / "scenarios" / "planner"


@pytest.mark.parametrize("path", sorted(FOLDER.glob("plan_*.toml")), ids=lambda p: p.stem)
def test_plan_scenarios_load_and_leave_layouts_to_simulate(path):
    loaded = load_plan(path)
    s = loaded.scenario
    pruner = Pruner(s.cluster, s.model, s.training)
    devices = loaded.space.devices or s.cluster.num_devices
    found = layouts(devices, s.training.global_batch, loaded.space, loaded.base)
    first, _ = next(pruner.survivors(found))
    build_plan(s.cluster, s.model, s.training, first)


@pytest.mark.parametrize("path", sorted(FOLDER.glob("sweep_*.toml")), ids=lambda p: p.stem)
def test_sweep_scenarios_load_at_every_point(path):
    data = read_toml(path)
    settings = sweep_settings(data.pop("sweep"), str(path))
    points = [
        parse_scenario(_at(data, values), str(path), path.parent)
        for values in grid(settings["vary"], settings.get("zip", False))
    ]
    s = points[0]  # every point parses; planning them all would take long at GPT-3 size
    for strategy in s.strategies:
        build_plan(s.cluster, s.model, s.training, strategy)


def _at(data, values):
    point = copy.deepcopy(data)
    for key, value in values.items():
        apply(point, key, value)
    return point
