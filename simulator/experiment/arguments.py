"""The boundary of the Python API: what ``run_strategy`` and ``run_scenario`` accept.

The configuration objects check their own fields
(:func:`simulator.keys.check_fields`); here the functions that take them check
that they got them -- a :class:`~simulator.parallel.strategy.Strategy`, not a
dict of its keys; a scenario, not ``None`` -- and that the run stays within the
limits a scenario file's run would (:func:`simulator.scenario.sizes.check_sizes`).
A misuse is one :class:`~simulator.errors.ConfigError` naming the function,
the parameter and what it takes, never a traceback from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..hardware import ClusterSpec
from ..hardware.faults import FAULT_KINDS, Fault, check_faults
from ..keys import Key, check_instance, show
from ..parallel.pipeline import Schedule
from ..parallel.strategy import Strategy
from ..parallel.training import TrainingConfig
from ..scenario.limits import Limits, raised
from ..scenario.parse import Scenario, load_scenario
from ..scenario.sizes import check_sizes

#: What every model config provides (:class:`simulator.nn.config.ModelConfig`).
MODEL_MEMBERS = ("kind", "dtype", "num_blocks", "build", "batch", "tokens")


def check_model(owner: str, model: Any) -> Any:
    """``model`` when it is a model config (MLPConfig, GPTConfig, ...), else ConfigError."""
    if all(hasattr(model, m) for m in MODEL_MEMBERS) and not isinstance(model, type):
        return model
    raise ConfigError(
        f"{owner}: model must be a model config such as MLPConfig(...) or GPTConfig(...), "
        f"got {type(model).__name__} {show(model)}",
        "model",
        "a model config",
    )


def limits_of(owner: str, limits: Limits | Mapping[str, int] | None) -> Limits:
    """``limits`` as :class:`Limits` (a mapping gives the limits to raise)."""
    return Limits(**raised(owner, limits))


def check_run(
    cluster: Any,
    model: Any,
    training: Any,
    strategy: Any,
    faults: Any,
    schedule: Any,
    base_dir: Any,
    limits: Any,
) -> tuple[tuple[Fault, ...], Limits]:
    """Check the arguments of :func:`~simulator.experiment.runner.run_strategy`; the faults
    as a tuple and the limits."""
    owner = "run_strategy"
    check_instance(owner, "cluster", cluster, ClusterSpec, "e.g. preset('dgx-a100', nodes=2)")
    check_model(owner, model)
    check_instance(owner, "training", training, TrainingConfig, "e.g. TrainingConfig(steps=3)")
    check_instance(owner, "strategy", strategy, Strategy, "Strategy(**table) builds one")
    if schedule is not None:
        check_instance(owner, "schedule", schedule, Schedule, "parse_csv(text) reads one")
    if base_dir is not None:
        check_instance(owner, "base_dir", base_dir, (str, Path))
    faults = _faults(owner, faults)
    check_faults(faults, cluster.num_devices, cluster.nodes)
    checked = limits_of(owner, limits)
    check_sizes(checked, model, training, [strategy], owner, python=True)
    return faults, checked


def _faults(owner: str, faults: Any) -> tuple[Fault, ...]:
    kinds = tuple(FAULT_KINDS.values())
    if isinstance(faults, kinds):
        faults = (faults,)
    if not isinstance(faults, Iterable) or isinstance(faults, str | bytes | Mapping):
        raise ConfigError(
            f"{owner}: faults must be a list of Straggler, SlowLink or Fail, got {show(faults)}",
            "faults",
            "a list of faults",
        )
    out = tuple(faults)
    for fault in out:
        check_instance(owner, "faults", fault, kinds)
    return out


def scenario_of(owner: str, scenario: Any) -> Scenario:
    """A :class:`Scenario`, loaded from its file when given a path; checked like a
    file's (types and limits)."""
    if isinstance(scenario, str | Path):
        return load_scenario(scenario)
    check_instance(owner, "scenario", scenario, Scenario, "or give the path of a scenario file")
    check_instance(owner, "scenario.cluster", scenario.cluster, ClusterSpec)
    check_model(owner, scenario.model)
    check_instance(owner, "scenario.training", scenario.training, TrainingConfig)
    check_instance(owner, "scenario.limits", scenario.limits, Limits)
    if not isinstance(scenario.strategies, list | tuple) or not scenario.strategies:
        raise ConfigError(
            f"{owner}: scenario.strategies must be a non-empty list of Strategy, got "
            f"{show(scenario.strategies)}",
            "scenario.strategies",
            "a list of Strategy",
        )
    for s in scenario.strategies:
        check_instance(owner, "scenario.strategies", s, Strategy)
    faults = _faults(owner, scenario.faults)
    check_faults(faults, scenario.cluster.num_devices, scenario.cluster.nodes)
    check_sizes(
        scenario.limits, scenario.model, scenario.training, scenario.strategies, owner, python=True
    )
    return scenario


#: A true-or-false argument (``progress``).
FLAG = Key.of(bool, "true or false")
