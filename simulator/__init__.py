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
  reachable as ``simulator.plots``; it is imported on first use, so that
  ``import simulator`` does not load matplotlib.
"""

import os

# Layers multiply small matrices; a multithreaded BLAS spends more time waking
# threads than computing (and thrashes when cores are shared). One thread,
# unless the user chose otherwise, and only if numpy is not loaded yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import comm, ops
from .engine import Engine
from .engine.trace import Trace
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
from .experiment.runner import ScenarioResult, StrategyResult, run_scenario, run_strategy
from .hardware import (
    PRESETS,
    ClusterSpec,
    DeviceSpec,
    LinkSpec,
    NodeSpec,
    cluster_of,
    preset,
    single_switch,
)
from .nn.abstract import AbstractConfig
from .nn.gpt import GPTConfig
from .nn.llama import LlamaConfig
from .nn.models import MLPConfig
from .nn.named import NAMED_MODELS, named_model
from .ops.arrays import ShapeArray
from .ops.tape import recording
from .parallel import Mesh, Strategy, build_plan
from .parallel.mesh import describe as describe_mesh
from .parallel.pipeline import Action, Schedule, get_schedule, parse_csv, schedule_names, validate
from .parallel.pipeline.timeline import run as unit_timeline
from .parallel.training import TrainingConfig
from .planner import plan, sweep
from .scenario.limits import Limits
from .scenario.parse import Scenario, load_scenario, parse_scenario
from .viz.outputs import write_outputs
from .viz.report import comparison_table

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
    """``simulator.plots``: the pictures, imported on first use (PEP 562)."""
    if name == "plots":
        from .viz import plots

        return plots
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
