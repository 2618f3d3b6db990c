"""An educational simulator of parallel training on virtual devices.

Real numpy training math runs on virtual devices whose compute and links are
simulated with SimPy; every strategy records a timeline, pipeline bubbles,
memory and traffic, and reproduces single-device training exactly.

The public API, from the bottom up:

* hardware: :func:`preset`, :data:`PRESETS`, :class:`ClusterSpec`,
  :class:`DeviceSpec`, :class:`LinkSpec`, :func:`single_switch`,
  :func:`cluster_of` and :class:`NodeSpec` (nodes of several kinds);
* the engine and its record: :class:`Engine`, :class:`Trace`, :mod:`ops`
  (the op vocabulary), :func:`recording` (the tape of what code did),
  :class:`ShapeArray` (an array with a shape and no data);
* models: :class:`MLPConfig`, :class:`GPTConfig`, :class:`LlamaConfig`,
  :class:`AbstractConfig`, and the models of the papers by name
  (:func:`named_model`, :data:`NAMED_MODELS`);
* collectives: :mod:`simulator.comm`;
* strategies: :class:`Strategy`, :class:`TrainingConfig`, :class:`Mesh` and
  :func:`describe_mesh` (which links every group's traffic crosses),
  pipeline schedules (:func:`get_schedule`, :func:`schedule_names`,
  :class:`Schedule`, :class:`Action`, :func:`parse_csv`, :func:`validate`,
  :func:`unit_timeline` (a schedule placed on an idealised unit-time pipeline));
* running: :func:`run_strategy`, :func:`run_scenario`, :func:`load_scenario`,
  :func:`parse_scenario`, :func:`write_outputs`, :func:`comparison_table`,
  :class:`Limits` (what one input may ask for);
* errors: every one derives from :class:`SimulatorError`; an argument that is
  not allowed (the wrong type, outside its range) raises :class:`ConfigError`,
  naming the parameter and what it allows, with the rules the scenario files
  use; a size over a limit raises :class:`LimitError`;
* pictures: :mod:`simulator.viz.plots` (``gantt``, ``memory``, ``compare``), also
  reachable as ``simulator.plots``.

Each name is imported when first used, so that ``import simulator`` (and
``python -m simulator --help``) does not pay for the pictures (matplotlib), the
planner or anything a program does not use.
"""

import importlib
import os

# Layers multiply small matrices; a multithreaded BLAS spends more time waking
# threads than computing (and thrashes when cores are shared). One thread,
# unless the user chose otherwise, and only if numpy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from .errors import (
    ConfigError,
    DeadlockError,
    DeviceFailedError,
    LayoutError,
    LimitError,
    OutOfMemoryError,
    ScenarioError,
    ScheduleError,
    SimulatorError,
)

#: Where each public name lives: it is imported when first used (PEP 562), so that
#: ``import simulator`` costs next to nothing and a program pays only for what it
#: uses. A name maps to ``(module, attribute)``; a module alone is the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    "comm": (".comm", None),
    "ops": (".ops", None),
    "plots": (".viz.plots", None),
    "Engine": (".engine", "Engine"),
    "Trace": (".engine.trace", "Trace"),
    "ScenarioResult": (".experiment.runner", "ScenarioResult"),
    "StrategyResult": (".experiment.runner", "StrategyResult"),
    "run_scenario": (".experiment.runner", "run_scenario"),
    "run_strategy": (".experiment.runner", "run_strategy"),
    "PRESETS": (".hardware", "PRESETS"),
    "ClusterSpec": (".hardware", "ClusterSpec"),
    "DeviceSpec": (".hardware", "DeviceSpec"),
    "LinkSpec": (".hardware", "LinkSpec"),
    "NodeSpec": (".hardware", "NodeSpec"),
    "cluster_of": (".hardware", "cluster_of"),
    "preset": (".hardware", "preset"),
    "single_switch": (".hardware", "single_switch"),
    "AbstractConfig": (".nn.abstract", "AbstractConfig"),
    "GPTConfig": (".nn.gpt", "GPTConfig"),
    "LlamaConfig": (".nn.llama", "LlamaConfig"),
    "MLPConfig": (".nn.models", "MLPConfig"),
    "NAMED_MODELS": (".nn.named", "NAMED_MODELS"),
    "named_model": (".nn.named", "named_model"),
    "ShapeArray": (".ops.arrays", "ShapeArray"),
    "recording": (".ops.tape", "recording"),
    "Mesh": (".parallel", "Mesh"),
    "Strategy": (".parallel", "Strategy"),
    "build_plan": (".parallel", "build_plan"),
    "describe_mesh": (".parallel.mesh", "describe"),
    "Action": (".parallel.pipeline", "Action"),
    "Schedule": (".parallel.pipeline", "Schedule"),
    "get_schedule": (".parallel.pipeline", "get_schedule"),
    "parse_csv": (".parallel.pipeline", "parse_csv"),
    "schedule_names": (".parallel.pipeline", "schedule_names"),
    "validate": (".parallel.pipeline", "validate"),
    "unit_timeline": (".parallel.pipeline.timeline", "run"),
    "TrainingConfig": (".parallel.training", "TrainingConfig"),
    "plan": (".planner", "plan"),
    "sweep": (".planner", "sweep"),
    "Limits": (".scenario.limits", "Limits"),
    "Scenario": (".scenario.parse", "Scenario"),
    "load_scenario": (".scenario.parse", "load_scenario"),
    "parse_scenario": (".scenario.parse", "parse_scenario"),
    "write_outputs": (".viz.outputs", "write_outputs"),
    "comparison_table": (".viz.report", "comparison_table"),
}

__all__ = [
    "NAMED_MODELS",
    "PRESETS",
    "AbstractConfig",
    "Action",
    "ClusterSpec",
    "ConfigError",
    "DeadlockError",
    "DeviceFailedError",
    "DeviceSpec",
    "Engine",
    "GPTConfig",
    "LayoutError",
    "LimitError",
    "Limits",
    "LinkSpec",
    "LlamaConfig",
    "MLPConfig",
    "Mesh",
    "NodeSpec",
    "OutOfMemoryError",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "Schedule",
    "ScheduleError",
    "ShapeArray",
    "SimulatorError",
    "Strategy",
    "StrategyResult",
    "Trace",
    "TrainingConfig",
    "build_plan",
    "cluster_of",
    "comm",
    "comparison_table",
    "describe_mesh",
    "get_schedule",
    "load_scenario",
    "named_model",
    "ops",
    "parse_csv",
    "parse_scenario",
    "plan",
    "preset",
    "recording",
    "run_scenario",
    "run_strategy",
    "schedule_names",
    "single_switch",
    "sweep",
    "unit_timeline",
    "validate",
    "write_outputs",
]


def __getattr__(name: str) -> object:
    """A public name, imported on first use (:data:`_LAZY`) and kept (PEP 562)."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(where[0], __name__)
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
