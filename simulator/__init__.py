"""An educational simulator of parallel training on virtual devices.

Real numpy training math runs on virtual devices whose compute and links are
simulated with SimPy; every strategy records a timeline, pipeline bubbles,
memory and traffic, and reproduces single-device training exactly.
"""

from .errors import (
    DeadlockError,
    LayoutError,
    OutOfMemoryError,
    ScenarioError,
    ScheduleError,
    SimulatorError,
)
from .hardware import ClusterSpec, DeviceSpec, LinkSpec, preset
from .nn.gpt import GPTConfig
from .nn.models import MLPConfig
from .parallel import Mesh, Strategy, build_plan
from .training import TrainingConfig

__all__ = [
    "ClusterSpec",
    "DeadlockError",
    "DeviceSpec",
    "GPTConfig",
    "LayoutError",
    "LinkSpec",
    "MLPConfig",
    "Mesh",
    "OutOfMemoryError",
    "ScenarioError",
    "ScheduleError",
    "SimulatorError",
    "Strategy",
    "TrainingConfig",
    "build_plan",
    "preset",
]
